"""Structured logging: one JSON object per line, stamped with the current request id."""

from __future__ import annotations

import contextvars
import logging
import sys
from datetime import UTC, datetime

import orjson

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")

# Attributes every LogRecord has; anything else was passed through ``extra=`` and is logged.
_STANDARD_ATTRS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = request_id_var.get()
        if request_id:
            entry["request_id"] = request_id
        for name, value in vars(record).items():
            if name not in _STANDARD_ATTRS and not name.startswith("_"):
                entry[name] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        request_id = request_id_var.get()
        return f"{line} [request_id={request_id}]" if request_id else line


_HANDLER_NAME = "apicat-stderr"


def configure_logging(level: str, fmt: str) -> None:
    """Route the ``apicat`` loggers to stderr in the chosen format (idempotent).

    Libraries' warnings and errors (aiokafka, uvicorn, stamina's retries, chDB) go through the
    root logger in the same format, with the request id, instead of as bare lines.
    """
    formatter = (
        JsonFormatter()
        if fmt == "json"
        else _TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    ours = logging.getLogger("apicat")
    ours.handlers[:] = [_stderr_handler(formatter, logging.NOTSET)]
    ours.setLevel(level)
    ours.propagate = False
    root = logging.getLogger()
    # Keep handlers others installed (a test runner's capture, say); replace only our own.
    kept = [handler for handler in root.handlers if handler.get_name() != _HANDLER_NAME]
    root.handlers[:] = [*kept, _stderr_handler(formatter, logging.WARNING)]


def _stderr_handler(formatter: logging.Formatter, level: int) -> logging.Handler:
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(formatter)
    handler.setLevel(level)
    return handler
