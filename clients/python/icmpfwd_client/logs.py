"""The log line of docs/cli-contract.md: one JSON object per line on stderr with `time`, `level`
(debug, info, warn, error: a word), `msg`, and `session` / `trace_id` / `target` when the line is
about a session, a request or one service (passed as logging `extra=`)."""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone
from typing import Any, Dict, Optional

FIELDS = ("target", "session", "trace_id", "request_id")

_LEVELS = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warn", logging.ERROR: "error"}


def level_word(levelno: int) -> str:
    if levelno >= logging.ERROR:
        return "error"
    return _LEVELS.get(levelno, "debug" if levelno < logging.INFO else "info")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        t = datetime.fromtimestamp(record.created, tz=timezone.utc)
        line: Dict[str, Any] = {
            "time": t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z",
            "level": level_word(record.levelno),
            "msg": record.getMessage(),
        }
        for k in FIELDS:
            v = getattr(record, k, None)
            if v is not None and v != "":
                line[k] = v
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info).splitlines()[-1]
        return json.dumps(line, separators=(",", ":"))


def setup(verbose: bool = False, stream: Optional[Any] = None) -> None:
    """JSON lines on stderr for the whole process (the CLI calls it; a library user may not)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
