"""Real processes: builds killed at any moment, interrupted, or run beside readers and
other builds never lose or damage the last good build. Bounded in time; each test works
in its own temporary project."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from funnel.pipedrive.sample import generate

from .conftest import read_report

TIMEOUT = 120
pytestmark = pytest.mark.slow  # real processes, killed and interrupted: CI runs them


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> dict[str, Path]:
    """A large export (a build takes about a second) and a different small one."""
    base = tmp_path_factory.mktemp("exports")
    generate(base / "large", deals=200_000, seed=1)
    generate(base / "small", deals=500, seed=2)
    return {"large": base / "large", "small": base / "small"}


@pytest.fixture
def good(project: Path, exports) -> Path:
    """The project with a committed build of the small export."""
    run("build", "--raw-data", str(exports["small"]), cwd=project, check=True)
    return project


def run(*args: str, cwd: Path, check: bool = False) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "funnel", *args], cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT)
    if check:
        assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return result


def start_build(project: Path, raw: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "funnel", "build", "--raw-data", str(raw), *extra],
        cwd=project,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_line(proc: subprocess.Popen[str], words: str) -> list[str]:
    """Read the build's stderr until a line containing `words` (the build is then mid-way)."""
    seen = []
    deadline = time.monotonic() + TIMEOUT
    assert proc.stderr is not None
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line)
        if words in line:
            return seen
    raise AssertionError(f"the build never printed {words!r}: {''.join(seen)}")


def leftovers(project: Path) -> list[Path]:
    return sorted((project / "target").glob(".*.tmp*"))


@pytest.mark.parametrize(
    "line",
    ["OK    source pipedrive.deal_changes", "OK    table  int_deal_stage_history", "OK    table  rep_sales_funnel_monthly"],
    ids=["after-sources", "mid-models", "during-tests"],
)
def test_a_build_killed_mid_way_leaves_the_last_good_build(good, exports, line):
    database = good / "target" / "dev.duckdb"
    before = read_report(database)
    proc = start_build(good, exports["large"])
    wait_for_line(proc, line)
    running = proc.poll() is None
    assert leftovers(good) or not running, "a running build should be writing its temporary file"
    proc.kill()
    proc.communicate(timeout=TIMEOUT)
    if proc.returncode == 0:  # on a very loaded machine the build may finish first
        assert read_report(database) != before
    else:
        assert read_report(database) == before
    run("build", "--raw-data", str(exports["small"]), cwd=good, check=True)
    assert leftovers(good) == []


@pytest.mark.parametrize("delay", [0.05, 0.4, 1.0])
def test_a_build_killed_at_any_moment_leaves_the_last_good_build(good, exports, delay):
    database = good / "target" / "dev.duckdb"
    before = read_report(database)
    proc = start_build(good, exports["large"])
    time.sleep(delay)
    proc.kill()
    proc.communicate(timeout=TIMEOUT)
    after = read_report(database)  # opens and reads: the file is intact
    if proc.returncode == 0:  # finished before the kill: then it is the complete new build
        assert after != before
    else:
        assert after == before
    assert run("test", cwd=good).returncode == 0
    # The next build needs no manual cleanup and removes what the killed one left.
    run("build", "--raw-data", str(exports["small"]), cwd=good, check=True)
    assert read_report(database) == before
    assert leftovers(good) == []


@pytest.mark.parametrize("line", ["OK    source pipedrive.deal_changes", "OK    table  int_completed_activities"])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_an_interrupted_build_says_so_and_exits_130(good, exports, sig, line):
    database = good / "target" / "dev.duckdb"
    before = read_report(database)
    proc = start_build(good, exports["large"])
    wait_for_line(proc, line)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "Interrupted; the last good build is unchanged"
    assert "Traceback" not in err
    assert read_report(database) == before
    assert leftovers(good) == []


def add_slow_model(project: Path) -> None:
    """A model that keeps a build busy for a few seconds after the report is built."""
    (project / "sql" / "reporting" / "rep_zz_slow.sql").write_text(
        "select sum(i % 7) as n from range(1000000000) as t(i) "
        "where exists (select 1 from {{ ref('rep_sales_funnel_monthly') }})"  # runs after the report
    )


def test_readers_and_a_second_build_while_a_build_runs(good, exports):
    database = good / "target" / "dev.duckdb"
    before = read_report(database)
    add_slow_model(good)
    proc = start_build(good, exports["large"])
    try:
        wait_for_line(proc, "OK    table  rep_sales_funnel_monthly")  # now busy with rep_zz_slow
        second = run("build", "--raw-data", str(exports["small"]), cwd=good)
        assert second.returncode == 1
        assert second.stderr.strip().splitlines()[-1].startswith("Error: another build of env 'dev' is running (pid ")
        assert "--wait" in second.stderr
        shown = run("show", "--format", "csv", cwd=good)
        assert shown.returncode == 0
        assert len(shown.stdout.splitlines()) == len(before) + 1  # the last complete build
        assert run("test", cwd=good).returncode == 0
        other_env = run("build", "--env", "prod", "--raw-data", str(exports["small"]), cwd=good)
        assert other_env.returncode == 0, other_env.stderr  # environments build in parallel
    finally:
        proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 0
    assert read_report(database) != before  # the first build committed when done
    assert leftovers(good) == []


def test_a_second_build_can_wait_for_the_first(good, exports):
    add_slow_model(good)
    proc = start_build(good, exports["large"])
    try:
        wait_for_line(proc, "OK    table  rep_sales_funnel_monthly")
        # --select keeps the waiting build short: it skips the slow model.
        second = run("build", "--wait", "60", "--select", "stg_stages", "--raw-data", str(exports["small"]), cwd=good)
        assert second.returncode == 0, second.stderr
    finally:
        proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 0
    # The waiting build ran last, so its (small) export is what is committed.
    import duckdb

    from funnel.build import record

    with duckdb.connect(str(good / "target" / "dev.duckdb"), read_only=True) as con:
        found = record.read(con)
    assert found is not None and found.raw_data == str(exports["small"])


def test_a_raw_data_path_with_quotes_and_spaces(good, exports):
    odd = good / 'it\'s a "folder"; drop table x'
    shutil.copytree(exports["small"], odd)
    result = run("build", "--raw-data", str(odd), cwd=good)
    assert result.returncode == 0, result.stderr


def test_works_from_any_folder(good, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "funnel", "show", "-f", "csv"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env={**os.environ, "FUNNEL_PROJECT_DIR": str(good)},
    )
    assert result.returncode == 0, result.stderr
    inside = run("show", "-f", "csv", cwd=good / "sql" / "staging")
    assert inside.stdout == result.stdout
