"""systemd's notification protocol (``sd_notify(3)``), spoken directly: datagrams on ``$NOTIFY_SOCKET``.

Under ``Type=notify`` the daemon says ``READY=1`` once it listens with its store open, keeps a ``STATUS=``
line with its queue up to date (``systemctl status`` shows it), pings ``WATCHDOG=1`` at half of
``WatchdogSec`` while its event loop runs, and says ``STOPPING=1`` when it begins to stop. Outside systemd
(no ``$NOTIFY_SOCKET``) every call does nothing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Mapping

log = logging.getLogger(__name__)

STATUS_EVERY_SECS = 10.0
"""How often the ``STATUS=`` line is brought up to date."""


class Notifier:
    def __init__(self, environ: Mapping[str, str] = os.environ) -> None:
        address = environ.get("NOTIFY_SOCKET", "")
        self.address = "\0" + address[1:] if address.startswith("@") else address  # "@": the abstract namespace
        self.watchdog_secs = _watchdog_secs(environ)

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def send(self, *assignments: str) -> None:
        """One datagram; a full or missing socket is logged, never raised (the daemon runs on regardless)."""
        if not self.enabled:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.setblocking(False)
                sock.sendto("\n".join(assignments).encode(), self.address)
        except OSError as error:
            log.warning("cannot notify systemd at %s: %s", self.address.replace("\0", "@"), error)

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")

    def stopping(self) -> None:
        self.send("STOPPING=1", "STATUS=stopping: finishing the running chunks")

    async def keep_informed(self, status: Callable[[], Awaitable[str]]) -> None:
        """Until cancelled: ``WATCHDOG=1`` at half the watchdog interval (when systemd set one) and the
        ``STATUS=`` line every :data:`STATUS_EVERY_SECS`."""
        if not self.enabled:
            return
        step = min(STATUS_EVERY_SECS, self.watchdog_secs / 2) if self.watchdog_secs else STATUS_EVERY_SECS
        since_status = 0.0
        while True:
            await asyncio.sleep(step)
            since_status += step
            if self.watchdog_secs:
                self.send("WATCHDOG=1")
            if since_status >= STATUS_EVERY_SECS:
                since_status = 0.0
                self.send(f"STATUS={await status()}")


def _watchdog_secs(environ: Mapping[str, str]) -> float | None:
    """``$WATCHDOG_USEC`` in seconds when it is meant for this process (``$WATCHDOG_PID``, when set)."""
    usec, pid = environ.get("WATCHDOG_USEC", ""), environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 1_000_000
