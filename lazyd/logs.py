"""Where lazyd's log lines go and how they look: plain text by default, JSON lines by configuration.

Under systemd (``$JOURNAL_STREAM`` names the journal as standard error) a text line carries no time of
its own, since journald adds one, and starts with the ``<N>`` priority prefix journald reads, so that
``journalctl -p warning`` works; a text line names the daemon (``[node]``) when ``[scheduler] node_name``
is set. A JSON line has ``time``, ``level``, ``logger``, ``node`` (that name, else the host name) and
``message``, plus the fields of the access log (``request_id``, ``route``, ``status``, ``duration_ms``,
``user_id``...).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Mapping
from datetime import datetime, timezone

from .config import Config, ConfigError

LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("text", "json")
TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
JOURNAL_TEXT = "<%(priority)d>%(levelname)s %(name)s: %(message)s"
SYSLOG_PRIORITIES = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


def configure_logging(config: Config, environ: Mapping[str, str] = os.environ) -> None:
    if config.logging.level not in LEVELS:
        raise ConfigError(f"'logging.level' must be one of {', '.join(LEVELS)}, got {config.logging.level!r}")
    if config.logging.format not in FORMATS:
        raise ConfigError(f"'logging.format' must be one of {', '.join(FORMATS)}, got {config.logging.format!r}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(config.logging.format, under_journald(environ),
                                   named_node=bool(config.scheduler.node_name)))
    handler.addFilter(NodeNamer(config.scheduler.node()))
    logging.basicConfig(level=config.logging.level.upper(), handlers=[handler])


def formatter(kind: str, journald: bool, named_node: bool = False) -> logging.Formatter:
    """A JSON line always names the daemon; a text line does when ``[scheduler] node_name`` is set, as it
    is where several daemons run (otherwise the host name, which journald records, tells them apart)."""
    if kind == "json":
        return JsonFormatter()
    text = JOURNAL_TEXT if journald else TEXT
    if named_node:
        text = text.replace("%(levelname)s ", "%(levelname)s [%(node)s] ")
    return JournalFormatter(text) if journald else logging.Formatter(text)


def under_journald(environ: Mapping[str, str]) -> bool:
    """Whether standard error is systemd's journal (it sets ``$JOURNAL_STREAM`` to its device and inode)."""
    stream = environ.get("JOURNAL_STREAM", "")
    if not stream:
        return False
    try:
        status = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError):
        return False
    return stream == f"{status.st_dev}:{status.st_ino}"


class JournalFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        record.priority = SYSLOG_PRIORITIES.get(record.levelno, 6)
        return super().format(record)


class NodeNamer(logging.Filter):
    """Names the daemon on each record (``node``): the lines of several daemons may end up together."""

    def __init__(self, node: str) -> None:
        super().__init__()
        self.node = node

    def filter(self, record: logging.LogRecord) -> bool:
        record.node = self.node
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        line = {"time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
                "level": record.levelname.lower(), "logger": record.name, "node": getattr(record, "node", ""),
                "message": record.getMessage(), **getattr(record, "fields", {})}
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)
