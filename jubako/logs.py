"""Logging for every jubako process: one line per event, JSON in pods, text on a terminal.

``JUBAKO_LOG_FORMAT`` = ``json`` | ``text`` | ``auto`` (default: JSON unless stderr is a
terminal), ``JUBAKO_LOG_LEVEL`` = ``DEBUG`` | ``INFO`` (default) | ``WARNING`` | ``ERROR``.
Fields passed with ``extra={...}`` become JSON keys, so logs can be queried by field.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime

# Attributes every LogRecord has; anything else came from `extra=` and is logged as a field.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        event = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "pid": record.process,
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                event[key] = value
        if record.exc_info:
            event["exc"] = self.formatException(record.exc_info)
        return json.dumps(event, default=str)


# Libraries that log every request at INFO: only their warnings are worth a line.
NOISY = ("httpx", "httpcore", "botocore", "boto3", "urllib3", "alembic.runtime.plugins")


def configure(level: str | None = None, fmt: str | None = None, *, default: str = "INFO") -> None:
    """Set up the root logger (later calls replace the handler). Servers log at INFO; the
    CLI's one-shot commands pass ``default="WARNING"`` so their output stays one line."""
    level = (level or os.environ.get("JUBAKO_LOG_LEVEL") or default).upper()
    fmt = (fmt or os.environ.get("JUBAKO_LOG_FORMAT") or "auto").lower()
    if fmt == "auto":
        fmt = "text" if sys.stderr.isatty() else "json"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JSONFormatter() if fmt == "json"
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level)
    for name in NOISY:
        logging.getLogger(name).setLevel(level if level == "DEBUG" else "WARNING")
