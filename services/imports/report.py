"""What an import run tells its user: each reply's outcome, the progress bar, the per-row error
report beside the input (``FILE.errors.csv``) and the summary."""
from __future__ import annotations

import csv
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TextIO

from services.imports.rows import RowError

OUTCOMES = ("registered", "already_there", "pending", "refused")
#: Refusals that mean the row is in Cordon already (a pending registration from another list, a
#: resident whose ID number is registered): counted as already there, not as errors.
_ALREADY = {("rejected", "already_pending"), ("conflict", "id_number")}


def outcome(reply: dict, started: datetime) -> str:
    """registered, already_there, pending or refused. A stored reply (the same command again: the
    same file imported before) carries events recorded before this run ``started``."""
    if not reply.get("ok"):
        err = reply.get("error") or {}
        key = (err.get("code"), err.get("reason") or err.get("field"))
        return "already_there" if key in _ALREADY else "refused"
    events = reply.get("events") or []
    if events and all(datetime.fromisoformat(e["recorded_at"]) < started for e in events):
        return "already_there"
    return "pending" if any(e["type"] == "ArrivalPendingRegistration" for e in events) else "registered"


def refusal(line: int, reply: dict) -> RowError:
    """A service's refusal as a line of the error report: the field it names, else its reason or code."""
    err = reply.get("error") or {}
    return RowError(line, err.get("field") or err.get("reason") or err.get("code") or "", err.get("message") or "")


@dataclass
class Summary:
    rows: int = 0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    errors: list[RowError] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def invalid(self) -> int:
        """Rows refused before sending (local validation), beside the service's refusals."""
        return len(self.errors) - self.counts["refused"]

    @property
    def rate(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def text(self, kind: str, report: Path) -> str:
        c = self.counts
        line = (f"import {kind}: {self.rows:,} rows in {self.seconds:.1f} s ({self.rate:,.0f} rows/s): "
                f"{c['registered']:,} registered, {c['already_there']:,} already there, ")
        if kind == "arrivals":
            line += f"{c['pending']:,} pending (complete them at the door: registry.pending_registrations), "
        line += f"{c['refused']:,} refused by the registry, {self.invalid:,} invalid"
        if self.errors:
            line += f"; the rows and why: {report}"
        return line

    def as_json(self, kind: str, report: Path) -> dict:
        return {"kind": kind, "rows": self.rows, **self.counts, "invalid": self.invalid,
                "seconds": round(self.seconds, 3), "rows_per_s": round(self.rate, 1),
                "errors_file": str(report)}


def errors_path(source: Path) -> Path:
    """The error report beside the input: ``arrivals.csv`` -> ``arrivals.csv.errors.csv``."""
    return source.with_name(source.name + ".errors.csv")


def write_errors(path: Path, errors: list[RowError]) -> None:
    """Every refused row (row, field, reason), in the file's order; written on every run, so the
    report is always that of the last run."""
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["row", "field", "reason"])
        for e in sorted(errors, key=lambda e: (e.line, e.field)):
            writer.writerow([e.line, e.field, e.reason])


class Progress:
    """rows done / total, rate, errors: on one line redrawn on a terminal (at most 10 times a
    second), else a line at every tenth of the file."""

    def __init__(self, kind: str, total: int, out: TextIO):
        self.kind, self.total, self.out = kind, total, out
        self.tty = out.isatty()
        self.started = time.perf_counter()
        self.shown = 0.0
        self.step = 0

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def update(self, done: int, errors: int, final: bool = False) -> None:
        now = time.perf_counter()
        if self.tty and not final and now - self.shown < 0.1:
            return
        step = done * 10 // max(self.total, 1)
        if not self.tty and not final and (step == self.step or step >= 10):  # the last line is the final one
            return
        self.shown, self.step = now, step
        rate = done / (now - self.started) if now > self.started else 0.0
        text = f"import {self.kind}: {done:,}/{self.total:,} rows  {rate:,.0f} rows/s  {errors:,} errors"
        self.out.write(f"\r{text}\x1b[K" + ("\n" if final else "") if self.tty else text + "\n")
        self.out.flush()
