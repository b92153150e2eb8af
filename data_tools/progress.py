"""A minimal progress bar on stderr (tqdm is not a dependency of the project).

On a terminal it redraws one line; in logs (not a tty) it prints a line at each further 10% of
the work, at most one every LOG_SECONDS, and always a final one.
"""
from __future__ import annotations

import sys
import time
from typing import TextIO

REDRAW_SECONDS = 0.2
LOG_STEPS = 10
LOG_SECONDS = 10.0


class Progress:
    def __init__(self, total: int, label: str, enabled: bool = True,
                 stream: TextIO | None = None):
        self.total, self.label, self.enabled = total, label, enabled
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.done = 0
        self.start = self.last_draw = time.monotonic()
        self.last_step = -1

    def update(self, n: int = 1) -> None:
        self.done += n
        if not self.enabled:
            return
        now = time.monotonic()
        if self.tty:
            if now - self.last_draw >= REDRAW_SECONDS or self.done >= self.total:
                self._draw(now, end="\r")
        else:
            step = self.done * LOG_STEPS // max(self.total, 1)
            if step != self.last_step and now - self.last_draw >= LOG_SECONDS:
                self.last_step = step
                self._draw(now, end="\n")

    def _draw(self, now: float, end: str) -> None:
        self.last_draw = now
        elapsed = now - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        pct = 100.0 * self.done / self.total if self.total else 100.0
        self.stream.write(f"{self.label}: {self.done}/{self.total} ({pct:5.1f}%) "
                          f"{rate:,.0f}/s {elapsed:.0f}s{end}")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self._draw(time.monotonic(), end="\n")

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
