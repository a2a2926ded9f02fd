"""lazyd: a self-hosted transcription daemon for lecture recordings.

This package imports no ML library at module level; backends are plugins loaded on demand.
"""

__version__ = "0.1.0"
