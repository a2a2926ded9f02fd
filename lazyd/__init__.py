"""lazyd: a self-hosted transcription daemon for lecture recordings.

What a plugin author needs is importable from here: ``hookimpl``, the backend interface with its
segment types, and the exporter interface with the transcript it renders. This package imports no ML library
at module level; backends load theirs on demand.
"""

import pluggy

from .backend import (
    SAMPLE_RATE,
    Backend,
    DetectedLanguage,
    DeviceSupport,
    LoadedModel,
    ModelSpec,
    Segment,
    TranscribeOptions,
    Word,
    english_only_error,
)
from .exporters import ExportOptions, Exporter, StreamingExporter, Transcript, TranscriptChunk

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker("lazyd")

__all__ = [
    "SAMPLE_RATE",
    "Backend",
    "DetectedLanguage",
    "DeviceSupport",
    "ExportOptions",
    "Exporter",
    "LoadedModel",
    "ModelSpec",
    "Segment",
    "StreamingExporter",
    "TranscribeOptions",
    "Transcript",
    "TranscriptChunk",
    "Word",
    "english_only_error",
    "hookimpl",
]
