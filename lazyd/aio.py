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


async def stop_tasks(tasks: list[asyncio.Task[None]]) -> None:
    """:func:`stop_task` for each of ``tasks``, to the end even when the caller is cancelled meanwhile (it is
    cancelled once they are all stopped).

    A task group cannot do this on Python 3.11: it cancels its tasks once, so a task that loses that
    cancel runs on, and the group waits for it for ever (seen in the tests: a daemon that never stopped).
    """
    cancelled = False
    for task in tasks:
        while not task.done():
            try:
                await stop_task(task)
            except asyncio.CancelledError:
                cancelled = True
    if cancelled:
        raise asyncio.CancelledError
