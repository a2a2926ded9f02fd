"""A test plugin that records every ``lazyd_transcription_finished`` call it receives."""

from lazyd import hookimpl

FINISHED: list[dict] = []


@hookimpl
def lazyd_transcription_finished(transcription: dict) -> None:
    FINISHED.append(transcription)
