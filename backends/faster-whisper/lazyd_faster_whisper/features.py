"""Whisper's log-mel features, computed a block of frames at a time.

faster-whisper computes the short-time Fourier transform of a whole chunk at once: for a four-minute
chunk that is some 200 MB of frames and spectra alive together (measured in issue 10: a worker's peak
RSS rose from 180 to 350 MB), twice over when two chunks are decoded at once. Each frame's spectrum
depends on its own 400 samples only, so :class:`BlockwiseFeatureExtractor` transforms
:data:`BLOCK_FRAMES` frames at a time into the mel spectrogram, and then applies the steps that look at
the whole (the clamp to 8 below the loudest value) exactly as faster-whisper does. The features are the
same but for float32 rounding in the mel projection, whose last bits can depend on how the BLAS splits a
product of another width among its kernels and threads (at most 6e-8 measured on a 2-core AMD EPYC, none
on an Intel machine; ``tests/test_faster_whisper_backend.py`` compares them). Whisper's windows can react
to such a difference as to any other: the text may differ from a direct call's on some machines.

Importing this module imports faster-whisper; the plugin imports it only when a model is loaded.
"""

from __future__ import annotations

import numpy
from faster_whisper.feature_extractor import FeatureExtractor

BLOCK_FRAMES = 3000
"""30 s of frames (10 ms each) per transform."""


class BlockwiseFeatureExtractor(FeatureExtractor):
    def __call__(self, waveform: numpy.ndarray, padding: int = 160, chunk_length: int | None = None) -> numpy.ndarray:
        if chunk_length is not None:  # as faster-whisper's: the window length follows the call
            self.n_samples = chunk_length * self.sampling_rate
            self.nb_max_frames = self.n_samples // self.hop_length
        signal = numpy.pad(waveform.astype(numpy.float32, copy=False), (0, padding)) if padding else waveform
        centred = numpy.pad(signal.astype(numpy.float32, copy=False), self.n_fft // 2, mode="reflect")
        frames = (len(centred) - self.n_fft) // self.hop_length  # faster-whisper drops the last frame
        window = numpy.hanning(self.n_fft + 1)[:-1].astype("float32")
        mel = numpy.empty((self.mel_filters.shape[0], frames), numpy.result_type(self.mel_filters, numpy.float32))
        for first in range(0, frames, BLOCK_FRAMES):
            last = min(first + BLOCK_FRAMES, frames)
            piece = centred[first * self.hop_length:(last - 1) * self.hop_length + self.n_fft]
            spectrum = self.stft(piece, self.n_fft, self.hop_length, window=window, center=False,
                                 return_complex=True).astype("complex64")
            mel[:, first:last] = self.mel_filters @ (numpy.abs(spectrum) ** 2)
        log_spec = numpy.log10(numpy.clip(mel, a_min=1e-10, a_max=None))
        log_spec = numpy.maximum(log_spec, log_spec.max() - 8.0)
        return (log_spec + 4.0) / 4.0
