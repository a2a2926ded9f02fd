"""Every hook a lazyd plugin can implement. Each docstring is the hook's contract.

Implement a hook with ``@lazyd.hookimpl`` on a function of the same name in a module registered through
the ``lazyd`` entry point group (or listed in ``[plugins] modules``).
"""

from __future__ import annotations

from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("lazyd")


@hookspec
def lazyd_register_backends() -> list[Any]:
    """Return a list of :class:`lazyd.Backend` instances this plugin provides.

    Called once at start-up, in the daemon and in each worker process; every backend ``name`` must be
    unique across all plugins (a duplicate stops start-up). Not firstresult: every plugin's list counts.
    """


@hookspec
def lazyd_register_exporters() -> list[Any]:
    """Return a list of :class:`lazyd.Exporter` instances this plugin provides.

    Called once at start-up. Every exporter ``name`` must be unique across all plugins (a duplicate stops
    start-up); the name is what ``/transcript/export?format=`` and ``lazyd export --format`` accept. Not
    firstresult: every plugin's list counts.
    """


@hookspec
def lazyd_transcription_finished(transcription: dict[str, Any]) -> None:
    """Called once when a transcription reaches a final state.

    ``transcription`` is the API's transcription object (``id``, ``creator_id``, ``current_state``, ...).
    Runs on the event loop after the state is committed: it must return quickly and must not block (start
    a task or hand work to a thread for anything slow). Exceptions are logged and do not affect the job.
    Return value ignored.
    """
