"""Probe, decode and split audio files with PyAV, in memory bounded by the window, never by the file.

Everything here blocks: the upload path runs it in a thread, the worker process calls it directly.
Times are seconds from the start of the file as a player shows it (the container's start time, which
for an mp3 is after the encoder delay), so a chunk planned from :func:`probe`'s duration decodes with
:func:`decode_window` to the same stretch of audio.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import av
import numpy as np

from lazyd.backend import SAMPLE_RATE

PROBE_PACKETS = 200
"""How many packets probe() may decode while looking for the first samples before it gives up."""

ENERGY_FRAME_SECS = 0.02
SMOOTHING_SECS = 0.3
MIN_CHUNK_SECS = 5.0
"""No chunk is shorter than this or chunk_secs / 4, whichever is less; a shorter tail joins the chunk before."""
MIN_PARALLEL_CHUNK_SECS = 30.0
"""A recording is not cut finer than this to keep parallel decoders busy: one Whisper window."""
GAP_SECS = 0.01
"""A jump ahead in frame timestamps longer than this is filled with silence when decoding."""
SILENCE_RMS = 1e-4
"""Smoothed RMS levels this close to the quietest count as equally quiet (about -80 dBFS)."""


class AudioError(ValueError):
    """The file is not usable audio; str(error) is a clear message for an HTTP 4xx detail or an .error.txt."""


@dataclass(frozen=True)
class AudioInfo:
    duration: float
    """Seconds of audio actually present: the end of the last packet, not the header's claim."""
    codec: str
    sample_rate: int
    channels: int
    container: str


def probe(path: str | os.PathLike) -> AudioInfo:
    """Describe the first audio stream; raise AudioError unless it holds decodable audio.

    Demuxes every packet (cheap, no decoding) to find the real duration, because headers lie about
    truncated files, and decodes packets only until the first samples come out, to prove the codec works.
    """
    if os.stat(path).st_size == 0:
        raise AudioError("the file is empty")
    with _open(path) as container:
        stream = _audio_stream(container)
        codec = _codec_name(stream)
        origin = _origin(container, stream)
        end = 0.0
        decoded = False
        tries = 0
        for packet in container.demux(stream):  # the last one is an empty packet that flushes the decoder
            end = max(end, _packet_end(packet, stream) - origin)
            if not decoded and tries < PROBE_PACKETS:
                tries += 1
                decoded = _decodes(packet, codec)
        if not decoded or end <= 0:
            raise AudioError("the file has no decodable audio")
        return AudioInfo(duration=end, codec=codec, sample_rate=stream.codec_context.sample_rate,
                         channels=stream.codec_context.channels, container=container.format.name)


def decode_window(path: str | os.PathLike, start: float, duration: float) -> np.ndarray:
    """Decode [start, start + duration) as mono float32 at SAMPLE_RATE; shorter when the file ends first.

    Sample i of the result is the audio at ``start + i / SAMPLE_RATE``. Bad packets are skipped.
    """
    if start < 0 or duration < 0:
        raise ValueError(f"start and duration must not be negative, got {start} and {duration}")
    out = np.zeros(int(round(duration * SAMPLE_RATE)), np.float32)
    if not len(out):
        return out
    filled = 0
    with _open(path) as container:
        stream = _audio_stream(container)
        at = _origin(container, stream) + start
        if start > 0:
            _seek(container, stream, at)
        for samples in _timeline(_frames(container, stream), at, len(out)):
            count = min(len(samples), len(out) - filled)
            out[filled:filled + count] = samples[:count]
            filled += count
            if filled == len(out):
                break
    return out[:filled]


def plan_chunks(path: str | os.PathLike, duration: float, chunk_secs: float, window_secs: float,
                parallel: int = 1) -> list[tuple[float, float]]:
    """Split [0, duration] into contiguous chunks of about ``chunk_secs``, cut at the quietest moments.

    Each cut starts at a multiple of the nominal length (:func:`nominal_chunk_secs`) and moves to the
    quietest point within ``window_secs`` of it, so that no word is split. A short tail joins the chunk
    before it.
    """
    if duration <= 0 or chunk_secs <= 0 or window_secs < 0:
        raise ValueError(f"need duration > 0, chunk_secs > 0, window_secs >= 0; got "
                         f"{duration}, {chunk_secs}, {window_secs}")
    step = nominal_chunk_secs(duration, chunk_secs, parallel)
    min_chunk = min(MIN_CHUNK_SECS, step / 4)
    cuts = [0.0]
    for index in range(1, int((duration - min_chunk) // step) + 1):
        nominal = index * step
        low = max(nominal - window_secs, cuts[-1] + min_chunk)
        high = min(nominal + window_secs, duration - min_chunk)
        if low > high:
            continue  # no cut here keeps both neighbours long enough (window_secs near chunk_secs)
        cuts.append(round(_quietest(path, low, high, nominal), 3) if low < high else low)
    cuts.append(duration)
    return list(zip(cuts, cuts[1:]))


def nominal_chunk_secs(duration: float, chunk_secs: float, parallel: int = 1) -> float:
    """``chunk_secs``; or, for ``parallel`` decoders, the length that gives each of them the same number of
    chunks (so that none idles at the end) when those are still :data:`MIN_PARALLEL_CHUNK_SECS` long (or
    ``chunk_secs``, if less), else the length of the fewest chunks of at most ``chunk_secs``. More cuts
    than that would cost words, since every cut changes how Whisper windows the speech around it."""
    if parallel <= 1:
        return chunk_secs
    fewest = math.ceil(duration / chunk_secs)
    even = math.ceil(fewest / parallel) * parallel
    count = even if duration / even >= min(MIN_PARALLEL_CHUNK_SECS, chunk_secs) else fewest
    return duration / count if count > 1 else chunk_secs


@contextmanager
def _open(path: str | os.PathLike) -> Iterator[av.container.InputContainer]:
    try:
        container = av.open(os.fspath(path), mode="r", metadata_errors="ignore")
    except av.FFmpegError as error:
        if isinstance(error, OSError):  # missing or unreadable: not a verdict on the content
            raise
        raise AudioError(f"not an audio file FFmpeg can read ({error.strerror or error})") from error
    with container:
        yield container


def _audio_stream(container: av.container.InputContainer) -> av.AudioStream:
    if not container.streams.audio:
        raise AudioError("the file has no audio stream")
    return container.streams.audio[0]


def _codec_name(stream: av.AudioStream) -> str:
    if stream.codec_context is None:
        raise AudioError("the audio codec cannot be decoded: FFmpeg does not know it")
    return stream.codec_context.codec.canonical_name


def _origin(container: av.container.InputContainer, stream: av.AudioStream) -> float:
    """Where time 0 is on the stream's timeline."""
    if container.start_time is not None:
        return container.start_time / av.time_base
    if stream.start_time is not None:
        return float(stream.start_time * stream.time_base)
    return 0.0


def _packet_end(packet: av.Packet, stream: av.AudioStream) -> float:
    timestamp = packet.pts if packet.pts is not None else packet.dts
    if timestamp is None:
        return 0.0
    return float((timestamp + (packet.duration or 0)) * stream.time_base)


def _decodes(packet: av.Packet, codec: str) -> bool:
    """Whether the packet decodes to samples; a bad packet is False, a decoder that cannot work raises."""
    try:
        return any(frame.samples for frame in packet.decode())
    except av.error.InvalidDataError:
        return False
    except av.FFmpegError as error:
        raise AudioError(f"the audio codec {codec} cannot be decoded ({error.strerror or error})") from error


def _frames(container: av.container.InputContainer, stream: av.AudioStream) -> Iterator[av.AudioFrame]:
    """Decode packet by packet, skipping bad ones: container.decode() would stop at the first."""
    for packet in container.demux(stream):
        try:
            yield from packet.decode()
        except av.error.InvalidDataError:
            continue


def _seek(container: av.container.InputContainer, stream: av.AudioStream, at: float) -> None:
    """Seek to a keyframe at or before ``at`` seconds on the stream's timeline."""
    try:
        container.seek(int(at / stream.time_base), stream=stream, backward=True)
    except av.FFmpegError:
        pass  # unseekable input: decode from the beginning, the first frame's timestamp still aligns it


def _timeline(frames: Iterator[av.AudioFrame], at: float, limit: int) -> Iterator[np.ndarray]:
    """Mono float32 at SAMPLE_RATE whose sample i is the audio at ``at + i / SAMPLE_RATE`` (stream timeline).

    A seek lands at or before ``at``, so the first frame's timestamp says how much to drop; if the audio
    begins later (a video whose sound starts late), silence fills the gap. ``limit`` bounds the silence.
    """
    frames = iter(frames)
    first = next(frames, None)
    if first is None:
        return
    offset = 0 if first.time is None else int(round((first.time - at) * SAMPLE_RATE))
    if offset > 0:
        yield np.zeros(min(offset, limit), np.float32)
    skip = max(0, -offset)
    for samples in _resampled(itertools.chain([first], frames), skip + limit):
        drop = min(skip, len(samples))
        skip -= drop
        yield samples[drop:]


def _resampled(frames: Iterator[av.AudioFrame], limit: int) -> Iterator[np.ndarray]:
    """Mono float32 at SAMPLE_RATE, with silence (at most ``limit`` samples) where timestamps jump ahead.

    Skipped bad packets leave such jumps; without the silence, everything after them would come early.
    """
    resampler = _resampler()
    expected: float | None = None
    """When the next frame should start; frames without a timestamp are taken to follow on."""
    for frame in frames:
        time = frame.time if frame.time is not None else expected
        if time is not None and expected is not None and time - expected > GAP_SECS:
            yield np.zeros(min(int(round((time - expected) * SAMPLE_RATE)), limit), np.float32)
        expected = None if time is None else time + frame.samples / frame.sample_rate
        frame.pts = None  # timing is handled here; the resampler's filter graph just converts
        try:
            converted = resampler.resample(frame)
        except ValueError:  # "Frame does not match AudioResampler setup.": the rate or layout changed
            converted = resampler.resample(None)
            resampler = _resampler()
            converted += resampler.resample(frame)
        for out in converted:
            yield out.to_ndarray()[0]
    for out in resampler.resample(None):
        yield out.to_ndarray()[0]


def _resampler() -> av.AudioResampler:
    return av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)


def _quietest(path: str | os.PathLike, low: float, high: float, nominal: float) -> float:
    """The quietest moment in [low, high] by smoothed short-frame RMS; ties go to the one nearest ``nominal``."""
    samples = decode_window(path, low, high - low)
    hop = int(ENERGY_FRAME_SECS * SAMPLE_RATE)
    frames = len(samples) // hop
    if frames == 0:
        return min(max(nominal, low), high)
    rms = np.sqrt(np.mean(samples[:frames * hop].reshape(frames, hop) ** 2, axis=1))
    width = max(1, min(frames, int(round(SMOOTHING_SECS / ENERGY_FRAME_SECS))))
    smoothed = np.convolve(rms, np.ones(width) / width, mode="valid")
    times = low + (np.arange(len(smoothed)) + width / 2) * ENERGY_FRAME_SECS
    quiet = np.flatnonzero(smoothed <= smoothed.min() + SILENCE_RMS)
    return float(times[quiet[np.argmin(np.abs(times[quiet] - nominal))]])
