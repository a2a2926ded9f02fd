"""asyncio helpers."""

from __future__ import annotations

import asyncio


async def stop_task(task: asyncio.Task[None]) -> None:
    """Cancel ``task`` and wait for it, cancelling again if a cancel gets lost.

    Python 3.11's ``asyncio.wait_for`` (used inside the database driver) can swallow a cancellation
    that arrives just as the awaited call completes; one ``cancel()`` is then not enough.
    """
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=1.0)
