"""Transcription jobs: ingest, the state machine, the scheduler and its worker processes, live events."""
