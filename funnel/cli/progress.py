"""Progress of long work (`funnel pull`) on stderr, fed by the core's `(label, done, total)` callback.

On a terminal: a rich bar with the counts, the rate and the time left. Into a pipe or a log
(cron, CI): one plain line at least every PLAIN_EVERY seconds, e.g.
`deal change logs 12,000/100,000 (12 %), 19.8/s, about 1 h 14 min left`, so that a pull of
a large account is never hours of silence. Both show the same figures (Meter).
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

PLAIN_EVERY = 10.0  # seconds between two plain lines (tests shorten it)


@dataclass
class Meter:
    """The counts of the current step and the rate since it began.

    A step's first report is its baseline: deals resumed from an earlier run count as done
    but not as speed, so the time left is not computed from a jump of 61,204 in no time.
    """

    clock: Callable[[], float] = time.monotonic
    label: str = ""
    done: int = 0
    total: int = 0
    _since: float = 0.0
    _from: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def update(self, label: str, done: int, total: int) -> bool:
        """Record a report; True when it begins a new step."""
        with self._lock:
            new = label != self.label
            if new:
                self.label, self._since, self._from = label, self.clock(), done
            self.done, self.total = done, total
            return new

    def rate(self) -> float | None:
        """Items per second since the step began (None until something was done)."""
        with self._lock:
            seconds = self.clock() - self._since
            done = self.done - self._from
        return done / seconds if done > 0 and seconds > 0 else None

    def left(self) -> float | None:
        """Seconds until the step is done at the rate so far (None without a total or a rate)."""
        rate = self.rate()
        if rate is None or self.total <= 0:
            return None
        return max(self.total - self.done, 0) / rate

    def line(self) -> str:
        """`deal change logs 12,000/100,000 (12 %), 19.8/s, about 1 h 14 min left`."""
        counts = f"{self.label} {self.done:,}"
        if self.total > 0:
            counts += f"/{self.total:,} ({100 * self.done // self.total} %)"
        parts = [counts]
        rate, left = self.rate(), self.left()
        if rate is not None:
            parts.append(f"{rate:,.1f}/s")
        if left is not None:
            parts.append(f"about {duration(left)} left")
        return ", ".join(parts)


def duration(seconds: float) -> str:
    """`40 s`, `3 min`, `1 h 14 min`: as precise as a person planning their day needs."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min"


@contextlib.contextmanager
def progress(description: str) -> Iterator[Callable[[str, int, int], None]]:
    """The callback to hand the core: a rich bar on a terminal, plain lines otherwise."""
    meter = Meter()
    if sys.stderr.isatty():
        with _bar(description, meter) as update:
            yield update
        return
    stop = threading.Event()
    thread = threading.Thread(target=_plain_lines, args=(meter, stop), daemon=True)
    thread.start()
    try:
        yield meter.update  # type: ignore[misc]  # returns a bool nobody reads
    finally:
        stop.set()
        thread.join()


def _plain_lines(meter: Meter, stop: threading.Event) -> None:
    from funnel.cli import console

    while not stop.wait(PLAIN_EVERY):
        if meter.label:
            console.info("", meter.line())


@contextlib.contextmanager
def _bar(description: str, meter: Meter) -> Iterator[Callable[[str, int, int], None]]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn

    from funnel.cli.console import _rich_stderr

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rate]}"),
        TextColumn("{task.fields[left]}"),
        console=_rich_stderr(),
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=None, rate="", left="")

        def update(label: str, done: int, total: int) -> None:
            meter.update(label, done, total)
            rate, left = meter.rate(), meter.left()
            bar.update(
                task,
                completed=done,
                total=total or None,
                description=f"{description} {label}",
                rate="" if rate is None else f"{rate:,.1f}/s",
                left="" if left is None else f"about {duration(left)} left",
            )

        yield update
