"""Logging: structlog to stderr, JSON lines when not on a TTY, readable on a TTY.

Loggers are lazy: structlog (and the asyncio it pulls in) is imported only when a message at
or above the configured level is actually emitted, so a no-op run does not pay for it.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR, "exception": logging.ERROR}
_state = {"level": logging.INFO, "configured": False}


def configure(*, debug: bool = False) -> None:
    """Set the level; structlog itself is configured on the first emitted message."""
    _state["level"] = logging.DEBUG if debug else logging.INFO
    _state["configured"] = False


def _structlog_ready() -> Any:
    import structlog  # noqa: PLC0415 - lazy on purpose (see module docstring)

    if not _state["configured"]:
        renderer: Any
        if sys.stderr.isatty():
            renderer = structlog.dev.ConsoleRenderer(colors=False)
        else:
            renderer = structlog.processors.JSONRenderer()
        structlog.configure(
            processors=[
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                structlog.processors.format_exc_info,
                renderer,
            ],
            wrapper_class=structlog.make_filtering_bound_logger(int(_state["level"])),
            logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
            cache_logger_on_first_use=False,
        )
        _state["configured"] = True
    return structlog


class Logger:
    """A named logger that defers to structlog only for messages that pass the level."""

    def __init__(self, name: str) -> None:
        self.name = name

    def _emit(self, method: str, event: str, **fields: Any) -> None:
        if _LEVELS[method] < int(_state["level"]):
            return
        getattr(_structlog_ready().get_logger(self.name), method)(event, **fields)

    def debug(self, event: str, **fields: Any) -> None:
        self._emit("debug", event, **fields)

    def info(self, event: str, **fields: Any) -> None:
        self._emit("info", event, **fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._emit("warning", event, **fields)

    def error(self, event: str, **fields: Any) -> None:
        self._emit("error", event, **fields)

    def exception(self, event: str, **fields: Any) -> None:
        self._emit("exception", event, **fields)


def get_logger(name: str) -> Logger:
    """The logger for module `name`."""
    return Logger(name)
