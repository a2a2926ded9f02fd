"""lazyd: a self-hosted transcription daemon for lecture recordings.

What a plugin author needs is importable from here: ``hookimpl`` and the backend interface with its
transcript types. This package imports no ML library at module level; backends load theirs on demand.
"""

import pluggy

from .backend import (
    SAMPLE_RATE,
    Backend,
    DeviceSupport,
    LoadedModel,
    ModelSpec,
    Segment,
    TranscribeOptions,
    Word,
)

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker("lazyd")

__all__ = [
    "SAMPLE_RATE",
    "Backend",
    "DeviceSupport",
    "LoadedModel",
    "ModelSpec",
    "Segment",
    "TranscribeOptions",
    "Word",
    "hookimpl",
]
