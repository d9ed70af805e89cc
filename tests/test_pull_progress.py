"""What `funnel pull` shows while it runs: counts, rate and time left, on a terminal or in a log."""

from __future__ import annotations

import re

import pytest

from funnel.cli import progress
from funnel.cli.progress import Meter, duration
from tests import test_pipedrive as api


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_line_gives_counts_rate_and_time_left_from_the_speed_of_this_run():
    clock = Clock()
    meter = Meter(clock=clock)
    meter.update("deal change logs", 61_204, 100_000)  # resumed: done, but not fetched now
    assert meter.line() == "deal change logs 61,204/100,000 (61 %)"
    clock.now += 100
    meter.update("deal change logs", 61_204 + 1_980, 100_000)
    rate = 1_980 / 100
    left = (100_000 - 63_184) / rate
    assert meter.line() == f"deal change logs 63,184/100,000 (63 %), {rate:.1f}/s, about {duration(left)} left"
    assert duration(left) == "31 min"  # 36,816 logs at 19.8/s


def test_a_new_step_starts_its_own_rate():
    clock = Clock()
    meter = Meter(clock=clock)
    meter.update("activities", 500, 0)
    clock.now += 1
    meter.update("activities", 2_500, 0)
    assert meter.line() == "activities 2,500, 2,000.0/s"  # no total: no share, no time left
    assert meter.update("deal change logs", 0, 40)
    clock.now += 2
    meter.update("deal change logs", 10, 40)
    assert meter.line() == "deal change logs 10/40 (25 %), 5.0/s, about 6 s left"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.4, "0 s"), (59, "59 s"), (61, "1 min"), (3599, "1 h 0 min"), (4440, "1 h 14 min"), (90_000, "25 h 0 min")],
)
def test_durations_read_like_a_person_would_say_them(seconds, text):
    assert duration(seconds) == text


def test_without_a_terminal_a_plain_line_comes_at_least_every_period(monkeypatch, capsys):
    monkeypatch.setattr(progress, "PLAIN_EVERY", 0.05)
    import time

    with progress.progress("pulling") as update:
        update("deal change logs", 0, 4)
        time.sleep(0.2)
        update("deal change logs", 1, 4)
        time.sleep(0.3)
    lines = capsys.readouterr().err.splitlines()
    first = [line for line in lines if line == "deal change logs 0/4 (0 %)"]
    later = [line for line in lines if re.fullmatch(r"deal change logs 1/4 \(25 %\), [\d.]+/s, about \d+ s left", line)]
    assert len(first) >= 2 and len(later) >= 2 and len(first) + len(later) == len(lines), lines


fake, sleeps, subset = api.fake, api.sleeps, api.subset  # the fake API of test_pipedrive.py


def test_a_pull_in_a_log_says_how_far_it_is_and_ends_with_requests_tokens_and_time(project, runner, fake, sleeps, monkeypatch):
    monkeypatch.setattr(progress, "PLAIN_EVERY", 0.1)
    fake.delay = 0.05  # each deal's log page
    fake.daily = 10**6  # so that the fake counts what it charges
    # Into a new folder: over the project's own export, the summary would end saying its 60
    # deals, which the fake's account does not have, were dropped.
    result = api.pull_cli(runner, "--out", "pulled")
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    logs = [line for line in lines if line.startswith("deal change logs ")]
    assert logs and all(
        re.fullmatch(r"deal change logs \d+/12 \(\d+ %\)(, [\d.]+/s, about \d+ s left)?", line) for line in logs
    ), lines
    summary = rf"Pulled everything into .+ \({len(fake.log)} requests, about {fake.spent:,} API tokens, \d+\.\ds\)"
    assert re.fullmatch(summary, lines[-1]), lines[-1]
