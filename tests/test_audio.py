"""lazyd.audio: probing, windowed decoding and chunk planning on files made by tests/media.py."""

from __future__ import annotations

import struct
from pathlib import Path

import av
import numpy as np
import pytest

from lazyd.audio import AudioError, AudioInfo, decode_window, plan_chunks, probe
from lazyd.backend import SAMPLE_RATE
from media import noise, silence, tone, truncate, video_with_audio, video_without_audio, write_audio

FORMATS = {  # suffix -> (codec, container) that probe() reports
    ".wav": ("pcm_s16le", "wav"),
    ".mp3": ("mp3", "mp3"),
    ".ogg": ("vorbis", "ogg"),
    ".opus": ("opus", "ogg"),
    ".flac": ("flac", "flac"),
    ".m4a": ("aac", "mov,mp4,m4a,3gp,3g2,mj2"),
    ".webm": ("opus", "matroska,webm"),
}
SWITCH = 2.0
"""The tone in switching_tone() goes from 440 Hz to 1000 Hz here."""


def switching_tone(secs: float = 4.0, rate: int = SAMPLE_RATE) -> np.ndarray:
    return np.concatenate([tone(440, SWITCH, rate), tone(1000, secs - SWITCH, rate)])


def dominant_frequency(samples: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / SAMPLE_RATE)[np.argmax(spectrum)])


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1])


def lag(window: np.ndarray, original: np.ndarray, first: int, most: int = 400) -> int:
    """How many samples later in ``original`` than ``first`` the window matches best."""
    padded = np.concatenate([np.zeros(most, np.float32), original, np.zeros(most + len(window), np.float32)])
    scores = [abs(np.dot(window, padded[first + most + shift:first + most + shift + len(window)]))
              for shift in range(-most, most + 1)]
    return int(np.argmax(scores)) - most


@pytest.fixture(scope="module")
def switching(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """switching_tone() at 44.1 kHz in every format, made once for the module."""
    folder = tmp_path_factory.mktemp("switching")
    return {suffix: write_audio(folder / f"switch{suffix}", switching_tone(rate=44_100), 44_100) for suffix in FORMATS}


@pytest.mark.parametrize("suffix", FORMATS)
def test_probe_reports_duration_codec_and_container_of_each_format(switching: dict[str, Path], suffix: str) -> None:
    info = probe(switching[suffix])

    assert (info.codec, info.container) == FORMATS[suffix]
    assert info.duration == pytest.approx(4.0, abs=0.03)
    assert info.sample_rate == (48_000 if info.codec == "opus" else 44_100)
    assert info.channels == 1 or (suffix == ".ogg" and info.channels == 2)  # FFmpeg's own vorbis encoder is stereo only


def test_probe_reports_the_sound_of_a_video(tmp_path: Path) -> None:
    info = probe(video_with_audio(tmp_path / "lecture.mp4", 2.0))

    assert info == AudioInfo(duration=pytest.approx(2.0, abs=0.03), codec="aac", sample_rate=44_100,
                             channels=1, container="mov,mp4,m4a,3gp,3g2,mj2")


def test_probe_rejects_an_empty_file(tmp_path: Path) -> None:
    (tmp_path / "empty.wav").touch()

    with pytest.raises(AudioError, match="^the file is empty$"):
        probe(tmp_path / "empty.wav")


def test_probe_rejects_a_text_file_named_mp3(tmp_path: Path) -> None:
    (tmp_path / "notes.mp3").write_text("These are my lecture notes, not a recording.\n" * 20)

    with pytest.raises(AudioError, match="^not an audio file FFmpeg can read \\(Invalid data"):
        probe(tmp_path / "notes.mp3")


def test_probe_rejects_a_video_without_audio(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="^the file has no audio stream$"):
        probe(video_without_audio(tmp_path / "silent-film.mp4", 1.0))


def test_probe_rejects_an_audio_codec_ffmpeg_does_not_know(tmp_path: Path) -> None:
    data = bytes(3200)
    fmt = struct.pack("<HHIIHH", 0x9999, 1, 16_000, 32_000, 2, 16)  # an unassigned WAVE format tag
    body = b"WAVEfmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    (tmp_path / "odd.wav").write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)

    with pytest.raises(AudioError, match="^the audio codec cannot be decoded"):
        probe(tmp_path / "odd.wav")


def test_probe_raises_file_not_found_for_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        probe(tmp_path / "nowhere.mp3")


def test_probe_reports_the_real_duration_of_a_truncated_mp3(tmp_path: Path) -> None:
    path = write_audio(tmp_path / "talk.mp3", noise(20.0))
    truncate(path, path.stat().st_size // 5)
    with av.open(str(path)) as container:
        assert container.duration / av.time_base == pytest.approx(20.0, abs=0.05)  # the header's claim

    duration = probe(path).duration

    assert duration == pytest.approx(4.0, abs=0.2)
    assert len(decode_window(path, 0, 30)) == pytest.approx(duration * SAMPLE_RATE, abs=0.01 * SAMPLE_RATE)


@pytest.mark.parametrize("suffix", [".wav", ".ogg", ".flac", ".opus"])
def test_probe_reports_the_real_duration_of_a_truncated_file(tmp_path: Path, suffix: str) -> None:
    path = write_audio(tmp_path / f"talk{suffix}", noise(10.0))
    truncate(path, path.stat().st_size // 2)

    duration = probe(path).duration

    assert 3.5 < duration < 6.5
    assert len(decode_window(path, 0, 30)) == pytest.approx(duration * SAMPLE_RATE, abs=0.1 * SAMPLE_RATE)


def test_probe_rejects_an_m4a_whose_index_was_cut_off(tmp_path: Path) -> None:
    path = write_audio(tmp_path / "talk.m4a", noise(5.0))
    truncate(path, path.stat().st_size // 2)  # the muxer writes the moov atom last

    with pytest.raises(AudioError, match="^not an audio file FFmpeg can read"):
        probe(path)


def test_probe_rejects_a_wav_cut_to_its_header_as_no_decodable_audio(tmp_path: Path) -> None:
    path = write_audio(tmp_path / "talk.wav", tone(440, 1.0))
    truncate(path, path.read_bytes().index(b"data") + 8)

    with pytest.raises(AudioError, match="^the file has no decodable audio$"):
        probe(path)


@pytest.mark.parametrize("suffix", [".wav", ".m4a", ".ogg", ".opus", ".flac"])
def test_garbage_in_the_middle_is_skipped_and_later_audio_keeps_its_time(tmp_path: Path, suffix: str) -> None:
    original = noise(10.0, seed=5)
    path = write_audio(tmp_path / f"damaged{suffix}", original)
    data = bytearray(path.read_bytes())
    middle, length = len(data) // 2, len(data) // 10
    data[middle:middle + length] = np.random.default_rng(0).integers(0, 256, length, np.uint8).tobytes()
    path.write_bytes(bytes(data))

    assert probe(path).duration == pytest.approx(10.0, abs=0.05)
    whole = decode_window(path, 0, 30)
    window = decode_window(path, 8.5, 1.0)

    assert len(whole) == pytest.approx(10.0 * SAMPLE_RATE, abs=0.05 * SAMPLE_RATE)
    assert lag(whole[8 * SAMPLE_RATE:9 * SAMPLE_RATE], original, 8 * SAMPLE_RATE) == 0
    assert lag(window, original, int(8.5 * SAMPLE_RATE)) == 0


def test_garbage_in_the_middle_of_an_mp3_costs_only_the_damaged_part(tmp_path: Path) -> None:
    path = write_audio(tmp_path / "damaged.mp3", tone(440, 10.0))
    data = bytearray(path.read_bytes())
    middle, length = len(data) // 2, len(data) // 10
    data[middle:middle + length] = np.random.default_rng(0).integers(0, 256, length, np.uint8).tobytes()
    path.write_bytes(bytes(data))

    duration = probe(path).duration  # raw mp3 has no timestamps: the damaged second drops out of the timeline
    samples = decode_window(path, 0, 30)

    assert 8.5 < duration < 10.1
    assert len(samples) == pytest.approx(duration * SAMPLE_RATE, abs=0.05 * SAMPLE_RATE)
    assert dominant_frequency(samples[-SAMPLE_RATE:]) == pytest.approx(440, abs=5)


@pytest.mark.parametrize("suffix", [".wav", ".mp3", ".ogg", ".m4a", ".opus", ".flac", ".webm"])
def test_decode_window_returns_mono_float32_at_16khz_of_just_the_requested_stretch(
        switching: dict[str, Path], suffix: str) -> None:
    before = decode_window(switching[suffix], 1.0, 0.5)
    after = decode_window(switching[suffix], 2.5, 0.5)
    across = decode_window(switching[suffix], SWITCH - 0.25, 0.5)

    for samples in (before, after, across):
        assert samples.dtype == np.float32 and samples.ndim == 1 and len(samples) == SAMPLE_RATE // 2
    assert dominant_frequency(before) == pytest.approx(440, abs=5)
    assert dominant_frequency(after) == pytest.approx(1000, abs=5)
    assert dominant_frequency(across[:3800]) == pytest.approx(440, abs=5)
    assert dominant_frequency(across[-3800:]) == pytest.approx(1000, abs=5)
    assert np.abs(after).max() == pytest.approx(0.5, abs=0.1)


@pytest.mark.parametrize("suffix", [".wav", ".mp3", ".ogg", ".m4a"])
def test_decode_window_matches_the_same_stretch_of_the_original_to_the_sample(tmp_path: Path, suffix: str) -> None:
    original = noise(4.0, seed=7)
    path = write_audio(tmp_path / f"noise{suffix}", original)

    for start in (0.0, 0.37, 2.5):
        window = decode_window(path, start, 0.5)
        first = int(start * SAMPLE_RATE)
        assert lag(window, original, first) == 0
        assert correlation(window, original[first:first + len(window)]) > 0.6


def test_decode_window_of_a_wav_is_exact(tmp_path: Path) -> None:
    original = noise(3.0, seed=2)
    path = write_audio(tmp_path / "noise.wav", original)

    assert np.allclose(decode_window(path, 1.25, 1.0), original[20_000:36_000], atol=1e-4)


def test_decode_window_near_the_end_returns_fewer_samples(switching: dict[str, Path]) -> None:
    assert len(decode_window(switching[".wav"], 3.5, 2.0)) == SAMPLE_RATE // 2
    assert len(decode_window(switching[".m4a"], 3.5, 2.0)) == pytest.approx(SAMPLE_RATE // 2, abs=600)


def test_decode_window_past_the_end_or_of_no_length_returns_nothing(switching: dict[str, Path]) -> None:
    assert len(decode_window(switching[".mp3"], 10.0, 1.0)) == 0
    assert len(decode_window(switching[".mp3"], 1.0, 0.0)) == 0


def test_decode_window_of_a_video_returns_its_sound(tmp_path: Path) -> None:
    samples = decode_window(video_with_audio(tmp_path / "lecture.mp4", 2.0), 0.5, 1.0)

    assert len(samples) == SAMPLE_RATE
    assert dominant_frequency(samples) == pytest.approx(440, abs=5)


def test_decode_window_rejects_a_negative_start(switching: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        decode_window(switching[".wav"], -1.0, 1.0)


SILENCES = [1.6, 3.3, 4.5, 5.8, 8.6, 9.7, 10.75]
"""Centres of the 0.4 s silences in bursts(); with 2 s chunks, each boundary has one 0.2-0.5 s away,
and the boundaries at 4 and 10 also have a farther one within a 0.9 s window."""
NEAREST_SILENCE = {2.0: 1.6, 4.0: 4.5, 6.0: 5.8, 8.0: 8.6, 10.0: 9.7}


def bursts(secs: float = 11.5) -> np.ndarray:
    """Tone bursts of changing pitch separated by the SILENCES."""
    parts, now = [], 0.0
    for index, centre in enumerate([*SILENCES, secs + 0.2]):
        parts.append(tone(300 + 100 * index, centre - 0.2 - now))
        if centre < secs:
            parts.append(silence(0.4))
        now = centre + 0.2
    return np.concatenate(parts)


@pytest.mark.parametrize("suffix", [".wav", ".mp3", ".ogg", ".m4a"])
def test_plan_chunks_cuts_inside_the_silence_nearest_each_boundary(tmp_path: Path, suffix: str) -> None:
    path = write_audio(tmp_path / f"bursts{suffix}", bursts())
    duration = probe(path).duration

    chunks = plan_chunks(path, duration, chunk_secs=2.0, window_secs=0.9)

    cuts = [end for _, end in chunks[:-1]]
    assert len(cuts) == len(NEAREST_SILENCE)
    for cut, centre in zip(cuts, NEAREST_SILENCE.values()):
        assert centre - 0.2 < cut < centre + 0.2


def test_plan_chunks_stays_near_the_boundary_when_there_is_no_silence(tmp_path: Path) -> None:
    path = write_audio(tmp_path / "hum.wav", tone(200, 9.0))

    chunks = plan_chunks(path, 9.0, chunk_secs=3.0, window_secs=1.0)

    assert [round(end, 1) for _, end in chunks] == [3.0, 6.0, 9.0]


def test_plan_chunks_gives_one_chunk_for_a_file_shorter_than_a_chunk(switching: dict[str, Path]) -> None:
    assert plan_chunks(switching[".wav"], 4.0, chunk_secs=10.0, window_secs=2.0) == [(0.0, 4.0)]


def test_plan_chunks_merges_a_short_tail_into_the_chunk_before(tmp_path: Path) -> None:
    path = write_audio(tmp_path / "noise.wav", noise(8.3))

    chunks = plan_chunks(path, 8.3, chunk_secs=2.0, window_secs=0.0)

    assert chunks == [(0.0, 2.0), (2.0, 4.0), (4.0, 6.0), (6.0, 8.3)]


@pytest.mark.parametrize(("chunk_secs", "window_secs"), [(1.0, 0.4), (1.5, 1.4), (2.5, 3.0), (0.7, 0.2)])
def test_plan_chunks_are_contiguous_ordered_and_cover_the_duration(
        tmp_path: Path, chunk_secs: float, window_secs: float) -> None:
    path = write_audio(tmp_path / "mixed.ogg", np.concatenate([noise(3.0, seed=1), silence(0.5), noise(4.0, seed=2)]))
    duration = probe(path).duration

    chunks = plan_chunks(path, duration, chunk_secs, window_secs)

    assert chunks[0][0] == 0.0 and chunks[-1][1] == duration
    assert all(start < end for start, end in chunks)
    assert all(previous[1] == following[0] for previous, following in zip(chunks, chunks[1:]))
    assert len(chunks) >= int(duration / chunk_secs) - 1


def test_plan_chunks_is_deterministic(tmp_path: Path) -> None:
    samples = bursts()
    path = write_audio(tmp_path / "bursts.mp3", samples + noise(len(samples) / SAMPLE_RATE, amplitude=0.05))
    duration = probe(path).duration

    assert plan_chunks(path, duration, 2.0, 0.9) == plan_chunks(path, duration, 2.0, 0.9)


@pytest.mark.parametrize(("duration", "chunk_secs", "parallel", "length"), [
    (361.7, 240.0, 1, 240.0),        # one decoder: chunk_secs itself, cut at its multiples
    (361.7, 240.0, 2, 361.7 / 2),    # two decoders, two chunks
    (500.0, 240.0, 2, 125.0),        # three chunks would leave a decoder idle at the end: four
    (3600.0, 240.0, 8, 225.0),       # 15 needed, 16 keep eight decoders equally busy
    (50.0, 240.0, 2, 240.0),         # halves would be under 30 s: not cut
    (58.9, 20.0, 2, 58.9 / 3),       # four would be shorter than chunk_secs: the fewest of at most 20 s
])
def test_the_nominal_chunk_length_keeps_every_decoder_busy_without_cutting_more_than_needed(
        duration: float, chunk_secs: float, parallel: int, length: float) -> None:
    from lazyd.audio import nominal_chunk_secs

    assert nominal_chunk_secs(duration, chunk_secs, parallel) == pytest.approx(length)
