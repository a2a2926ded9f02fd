"""Transcript quality through the whole daemon (real faster-whisper, bundled tiny.en, CPU) on made-up lectures.

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
from wer import normalise, wer

PAUSE_MARGIN_SECS = 0.5
"""A word whose middle is this far inside a pause is in the pause (the voice's own breath is not)."""


@pytest.fixture(scope="module")
def lecture_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.getbasetemp() / "lectures"


@pytest.fixture
def settings(make_config: Callable[..., Config]) -> Callable[..., Config]:
    """The defaults, on the CPU with two threads; ``transcription`` keys may be changed."""

    def make(**transcription: object) -> Config:
        config = make_config("", sections={"scheduler": {"enabled": True, "poll_secs": 0.2},
                                           "limits": {"min_audio_secs": 1.0}})
        decoding = dataclasses.replace(config.transcription, backend="faster-whisper", device="cpu",
                                       cpu_threads=2, **transcription)
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
