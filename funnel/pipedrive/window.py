"""Pipedrive's burst limit: so many requests per 2-second window and API token.

Pipedrive documents the window as 2 seconds, its size per plan (20 to 120 requests with an
API token) and three headers on every answer: x-ratelimit-limit (requests per window),
x-ratelimit-remaining, x-ratelimit-reset (seconds until the window resets); over the limit
it answers 429 (https://pipedrive.readme.io/docs/core-api-concepts-rate-limiting).

funnel uses the window and stays inside it: once an answer has said the limit, it keeps
several requests in flight (the answer time, not the window, is what holds one request at
a time back) and never sends more than the limit in any span of a window's length, counted
at the client, so no alignment of the server's windows sees more. Until the limit is known,
and where the API never says it, requests go one at a time.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

WINDOW = 2.0  # seconds (documented); a longer x-ratelimit-reset seen means a longer window
SLACK = 0.1  # seconds added to the window: answers take varying time to arrive, sends are counted here
MAX_IN_FLIGHT = 8  # requests at once: 40 a window at 0.1-0.4 s an answer needs 2 to 8


@dataclass
class Window:
    """Requests sent in the last window, kept under the limit the API reports."""

    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    limit: int | None = None  # requests per window, from x-ratelimit-limit
    length: float = WINDOW
    _sent: deque[float] = field(default_factory=deque)
    _pause_until: float = 0.0
    _floor: float = 0.0  # how far the waits have reached (a sleep that returns at once in tests still counts)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def in_flight(self) -> int:
        """How many requests may be under way at once: one until the limit is known."""
        return 1 if self.limit is None else max(1, min(MAX_IN_FLIGHT, self.limit))

    def acquire(self) -> None:
        """Wait until one more request fits in the window, then count it as sent."""
        while True:
            with self._lock:
                now = self._now()
                span = self.length + SLACK
                # One expression for "out of the window" in both places: a rounding of the sum
                # must not let a send through that the next check would still count.
                while self._sent and self._sent[0] + span <= now:
                    self._sent.popleft()
                until = self._pause_until
                if until <= now and self.limit is not None and len(self._sent) >= self.limit:
                    until = self._sent[0] + span
                if until <= now:
                    self._sent.append(now)
                    return
            self._wait(until - now, until)

    def note(self, limit: float | None, remaining: float | None, reset: float | None) -> None:
        """What an answer's x-ratelimit-* headers say; a used-up window is waited out here."""
        with self._lock:
            if limit is not None and limit >= 1:
                self.limit = int(limit)
            if reset is not None and reset > self.length:
                self.length = reset
            if remaining != 0 or reset is None:
                return
            now = self._now()
            ours = sum(1 for sent in self._sent if sent + self.length + SLACK > now)
            if self.limit is not None and ours >= self.limit:
                return  # used up by this pull's own requests: acquire() already waits for the oldest to leave
            # Used up by someone else with the same token: wait as long as the API says (the
            # reset may be rounded up to whole seconds, so this is kept for that case only).
            until = now + reset
            self._pause_until = max(self._pause_until, until)
        self._wait(reset, until)

    def _wait(self, seconds: float, until: float) -> None:
        self.sleep(seconds)
        with self._lock:
            self._floor = max(self._floor, until)

    def _now(self) -> float:
        return max(self.clock(), self._floor)
