"""What a rejected request must leave as it was: every row that matters, and every file of the data dir."""

from __future__ import annotations

from pathlib import Path

from lazyd.store import Transcription, TranscriptionChunk, User


def data_files(data_dir: Path) -> list[Path]:
    """Every file under the data directory but the SQLite database (which a read may touch)."""
    return sorted(path for path in data_dir.rglob("*") if path.is_file() and ".sqlite3" not in path.name)


async def snapshot(data_dir: Path) -> tuple:
    database = User._meta.database
    return (
        await database.list(User.select(User.id, User.username, User.password, User.active, User.role,
                                        User.can_interact, User.password_timestamp).tuples()),
        await database.list(Transcription.select(Transcription.id, Transcription.current_state,
                                                 Transcription.error_count).tuples()),
        await database.list(TranscriptionChunk.select(TranscriptionChunk.id, TranscriptionChunk.text).tuples()),
        data_files(data_dir),
    )
