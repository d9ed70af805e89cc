"""funnel pull and Pipedrive's burst window: used, never overrun (issue 22, item Rate)."""

from __future__ import annotations

import math
import time
from typing import Any

import pytest

from benchmarks.windowed_api import WindowedApi, serve
from funnel.pipedrive import pull as pipedrive
from funnel.pipedrive.window import SLACK, Window
from funnel.project.config import load_config
from tests import test_pipedrive as api


class Clock:
    """Time that moves only when someone sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def sends(window: Window, clock: Clock, n: int) -> list[float]:
    times = []
    for _ in range(n):
        window.acquire()
        times.append(clock.now)
    return times


def test_one_request_at_a_time_until_the_api_says_its_limit():
    clock = Clock()
    window = Window(sleep=clock.sleep, clock=clock)
    assert window.in_flight == 1
    assert sends(window, clock, 50) == [0.0] * 50 and clock.slept == []  # no limit known: no waiting either
    window.note(40, 39, 2)
    assert window.in_flight == 8
    window.note(3, 2, 2)
    assert window.in_flight == 3  # never more at once than the window holds


def test_never_more_than_the_limit_in_any_window_and_a_used_up_window_is_waited_out():
    clock = Clock()
    window = Window(sleep=clock.sleep, clock=clock)
    window.note(40, 39, 2)
    times = sends(window, clock, 130)
    for i, start in enumerate(times):
        inside = [t for t in times[i:] if t < start + 2 + SLACK - 1e-9]  # to a rounding of the sums
        assert len(inside) <= 40
    assert times[40] == pytest.approx(2 + SLACK) and times[80] == pytest.approx(2 * (2 + SLACK))  # and no slower
    sends(window, clock, 30)  # the window's 40 (10 above, 30 now) in the same instant
    clock.slept.clear()
    window.note(40, 0, 2)  # used up by this pull's own 40 sends: the count above waits already, no more
    assert clock.slept == []
    clock.now += 10
    window.acquire()
    window.note(40, 0, 1.5)  # used up, but not by this pull (another client of the same token)
    assert clock.slept == [1.5]
    start = clock.now
    window.acquire()
    assert clock.now == start  # waited once, not again


@pytest.fixture
def windowed(monkeypatch: pytest.MonkeyPatch) -> Any:
    api = WindowedApi(deals=60, limit=10, latency=0.05)
    server = serve(api)
    monkeypatch.setenv("PIPEDRIVE_API_URL", f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.setenv("PIPEDRIVE_API_TOKEN", "tok")
    yield api
    server.shutdown()
    server.server_close()


@pytest.mark.slow
def test_a_pull_uses_the_window_without_a_single_429_and_writes_what_one_at_a_time_writes(project, windowed, monkeypatch):
    started = time.monotonic()
    result = pipedrive.pull(load_config(), project / "raw_data")
    seconds = time.monotonic() - started
    # one page of each list (users, activity types, deal fields, stages, pipelines,
    # activities, deals, archived deals), then a log per deal
    assert windowed.refused == 0 and result.requests == 8 + 60
    assert 1 < windowed.most_in_flight <= 8  # side by side, within the limit of 10
    windows = math.ceil(result.requests / 10)
    assert seconds < windows * (2 + SLACK) + 2  # paced by the window, not by 66 answers of 50 ms one by one
    together = (project / "raw_data" / "deal_changes.csv").read_bytes()

    monkeypatch.setattr("funnel.pipedrive.window.MAX_IN_FLIGHT", 1)
    pipedrive.pull(load_config(), project / "alone")
    assert (project / "alone" / "deal_changes.csv").read_bytes() == together


fake, sleeps, subset = api.fake, api.sleeps, api.subset  # the fake API of test_pipedrive.py (80 requests a window)


def test_the_resume_file_of_a_pull_side_by_side_is_that_of_one_at_a_time(project, fake, sleeps, monkeypatch):
    journal = project / ".raw_data.resume.jsonl"

    def interrupt(label: str, done: int, total: int) -> None:
        if label == "deal change logs" and done == 7:
            raise KeyboardInterrupt

    kept = []
    for in_flight in (8, 1):
        monkeypatch.setattr("funnel.pipedrive.window.MAX_IN_FLIGHT", in_flight)
        with pytest.raises(KeyboardInterrupt):
            pipedrive.pull(load_config(), project / "raw_data", on_progress=interrupt)
        kept.append(journal.read_bytes())
        journal.unlink()
    assert kept[0] == kept[1] and kept[0].count(b"\n") == 1 + 7
