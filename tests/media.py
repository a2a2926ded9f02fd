"""Make audio and video files for tests with numpy and PyAV's bundled FFmpeg; no external tools.

PyAV 18's wheel has pcm_s16le, libmp3lame, libopus, flac, aac and libx264, but no libvorbis: .ogg falls
back to FFmpeg's native vorbis encoder (experimental, stereo only), and video to mpeg4 if libx264 is missing.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

# suffix -> (encoders, best first; container format; the rate the encoder must run at, or None for the input's)
_ENCODINGS: dict[str, tuple[tuple[str, ...], str, int | None]] = {
    ".wav": (("pcm_s16le",), "wav", None),
    ".mp3": (("libmp3lame",), "mp3", None),
    ".ogg": (("libvorbis", "vorbis"), "ogg", None),
    ".opus": (("libopus",), "ogg", 48_000),
    ".flac": (("flac",), "flac", None),
    ".m4a": (("aac",), "ipod", None),
    ".webm": (("libopus",), "webm", 48_000),
}
_VIDEO_ENCODERS = ("libx264", "mpeg4")
_STEREO_ONLY = {"vorbis"}


def tone(freq: float, secs: float, rate: int = 16_000, amplitude: float = 0.5) -> np.ndarray:
    """A sine wave, mono float32."""
    t = np.arange(int(round(secs * rate))) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def silence(secs: float, rate: int = 16_000) -> np.ndarray:
    return np.zeros(int(round(secs * rate)), np.float32)


def noise(secs: float, rate: int = 16_000, seed: int = 0, amplitude: float = 0.3) -> np.ndarray:
    """Uniform white noise, mono float32, the same for the same seed."""
    rng = np.random.default_rng(seed)
    return rng.uniform(-amplitude, amplitude, int(round(secs * rate))).astype(np.float32)


def write_audio(path: str | os.PathLike, samples: np.ndarray, rate: int = 16_000) -> Path:
    """Encode mono float32 ``samples`` at ``rate`` into ``path``; codec and container follow the suffix."""
    path = Path(path)
    try:
        codecs, container_format, codec_rate = _ENCODINGS[path.suffix.lower()]
    except KeyError:
        raise ValueError(f"no encoding known for {path.suffix!r}; use one of {sorted(_ENCODINGS)}") from None
    with av.open(str(path), mode="w", format=container_format) as container:
        _add_audio(container, _encoder(codecs), codec_rate or rate)
        _encode_audio(container, samples, rate)
    return path


def video_with_audio(path: str | os.PathLike, secs: float, rate: int = 44_100) -> Path:
    """An mp4 with an h264 (or mpeg4) video stream and an aac audio stream (a 440 Hz tone) of ``secs`` seconds."""
    path = Path(path)
    with av.open(str(path), mode="w", format="mp4") as container:
        video = _add_video(container)
        _add_audio(container, "aac", rate)
        _encode_video(container, video, secs)
        _encode_audio(container, tone(440, secs, rate), rate)
    return path


def video_without_audio(path: str | os.PathLike, secs: float) -> Path:
    """An mp4 with only an h264 (or mpeg4) video stream."""
    path = Path(path)
    with av.open(str(path), mode="w", format="mp4") as container:
        _encode_video(container, _add_video(container), secs)
    return path


def truncate(path: str | os.PathLike, keep_bytes: int) -> Path:
    """Cut the file to its first ``keep_bytes`` bytes, as an interrupted upload or copy would."""
    os.truncate(path, keep_bytes)
    return Path(path)


def _encoder(names: tuple[str, ...]) -> str:
    """The first of ``names`` that this FFmpeg build can encode with."""
    for name in names:
        try:
            av.Codec(name, "w")
        except av.codec.codec.UnknownCodecError:
            continue
        return name
    raise RuntimeError(f"PyAV's FFmpeg has none of the encoders {names}")


def _add_audio(container: av.container.OutputContainer, codec: str, rate: int) -> av.AudioStream:
    layout = "stereo" if codec in _STEREO_ONLY else "mono"
    stream = container.add_stream(codec, rate=rate, layout=layout)
    if av.Codec(codec, "w").experimental:
        stream.codec_context.options = {"strict": "experimental"}
    return stream


def _encode_audio(container: av.container.OutputContainer, samples: np.ndarray, rate: int) -> None:
    """Encode one mono frame; PyAV's encoder converts format, layout and rate and splits it into codec frames."""
    stream = container.streams.audio[0]
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples, np.float32).reshape(1, -1),
                                       format="flt", layout="mono")
    frame.sample_rate = rate
    frame.pts = 0
    frame.time_base = Fraction(1, rate)
    container.mux(stream.encode(frame))
    container.mux(stream.encode(None))


def _add_video(container: av.container.OutputContainer, fps: int = 10) -> av.VideoStream:
    stream = container.add_stream(_encoder(_VIDEO_ENCODERS), rate=fps)
    stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
    return stream


def _encode_video(container: av.container.OutputContainer, stream: av.VideoStream, secs: float) -> None:
    """Frames of a moving grey gradient; content does not matter, only that a real video stream exists."""
    fps = int(stream.codec_context.framerate)
    for index in range(int(round(secs * fps))):
        picture = np.full((48, 64, 3), (index * 7) % 256, np.uint8)
        frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
        frame.pts = index
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))
