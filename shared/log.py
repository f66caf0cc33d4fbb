"""structlog set-up: key-value events, JSON when not on a terminal.

User-facing commands (``cordon demo``, ``cordon backup``, …) keep their output clean: their logs go
to :data:`SINK`, which drops them until the command names a file for them (:func:`to_file`), unless
the command is run with ``-v`` (see :func:`user_facing`).
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import structlog


class _Sink:
    """A stream that writes nowhere, or to the file :func:`to_file` opened."""

    def __init__(self) -> None:
        self.file = None

    def write(self, text: str) -> None:
        if self.file is not None:
            self.file.write(text)

    def flush(self) -> None:
        if self.file is not None:
            self.file.flush()

    def isatty(self) -> bool:
        return False


#: Where a user-facing command's logs go (without ``-v``).
SINK = _Sink()


def setup(fmt: str = "auto", level: str = "info", stream=None) -> None:
    """Configure structlog once per process. ``fmt`` is auto, json or console."""
    stream = stream or sys.stderr
    if fmt == "auto":
        fmt = "console" if stream.isatty() else "json"
    renderer = (
        structlog.dev.ConsoleRenderer(colors=stream.isatty())
        if fmt == "console"
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
        ),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=True,
    )


def user_facing(parser: argparse.ArgumentParser) -> None:
    """Mark a command whose output is for people: its logs stay off the terminal unless ``-v``."""
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="print the log on stderr too (by default it goes to a file, or nowhere)")
    parser.set_defaults(quiet_logs=True)


def to_file(path: Path) -> None:
    """From now on, a quiet command's logs (JSON lines) go to ``path`` (appended)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if SINK.file is not None:
        SINK.file.close()
    SINK.file = open(path, "a", encoding="utf-8")


def get(name: str | None = None, **bound):
    log = structlog.get_logger(name) if name else structlog.get_logger()
    return log.bind(**bound) if bound else log
