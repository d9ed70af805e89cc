"""Text from the export reaches a terminal as text: no escape sequence it holds is sent.

An owner name with ESC[2J would clear the screen, OSC 0 would set the window title, and
rich markup (`[link=...]`) would become a live hyperlink. Each command runs as a user runs
it, in a real terminal (a pseudo-terminal), and what the terminal receives is checked.
Into a pipe, csv and json stay exact data.
"""

from __future__ import annotations

import json
import os
import pty
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from funnel.cli import app
from funnel.cli.console import printable

from .conftest import new_project, sampled

OWNER = "[bold red]Eve[/] \x1b[2J\x1b]0;owner title\x07[link=https://example.com/x]click[/link] :warning:\x9b31m"
REASON = "Price\x1b[2J\x1b]8;;https://example.com/y\x1b\\here\x1b]8;;\x1b\\ [link=https://example.com/z]z[/link]"
KPI = "Step 1: Lead\x1b]0;step title\x07 Generation"
FOLDER = "raw\x1b]0;folder title\x07data"
LAYER = "extra\x1b]0;layer title\x07[bold]"  # a folder under sql/ is a layer, whatever its name
SENT = ("\x1b[2J", "\x1b]", "\x07", "\x9b", "\x1b\\")  # what must never reach the terminal from the data
SCHEMA = "public_pipedrive_analytics"


def _replace(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{path.name} has no {old!r}"
    path.write_text(text.replace(old, new), encoding="utf-8")


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory, tiny_export: Path) -> dict[str, str]:
    """A project built (dev and prod) from an export whose names hold escape sequences and
    rich markup; returns the months each hostile text shows in."""
    root = tmp_path_factory.mktemp("terminal") / "project"
    with pytest.MonkeyPatch.context() as mp:
        new_project(root, mp, tiny_export)
        (root / "raw_data").rename(root / FOLDER)
        _replace(root / "environments.toml", 'raw_data = "raw_data"', f"raw_data = {json.dumps(FOLDER)}")
        users = root / FOLDER / "users.csv"
        lines = users.read_text().splitlines()
        first = lines[1].split(",")
        lines[1] = ",".join([first[0], '"' + OWNER.replace('"', '""') + '"', *first[2:]])
        users.write_text("\n".join(lines) + "\n")
        _replace(root / FOLDER / "fields.csv", '""Customer Not Ready""', json.dumps(REASON).replace('"', '""'))
        _replace(root / "sql" / "seeds" / "funnel_steps.csv", "Step 1: Lead Generation", KPI)
        # The stage is named so too: the seed's steps must name the export's stages (issue 21).
        _replace(root / FOLDER / "stages.csv", "1,Lead Generation", "1," + KPI.removeprefix("Step 1: "))
        (root / "sql" / "tests" / "owners_named_with_escapes.sql").write_text(
            "{{ config(severity='warn', description='owners whose name holds ESC') }}\n"
            "select user_id, user_name from {{ ref('stg_users') }} where contains(user_name, chr(27))\n"
        )
        (root / "sql" / LAYER).mkdir()
        (root / "sql" / LAYER / "rep_hostile.sql").write_text("select 1 as x\n")
        from typer.testing import CliRunner

        for env in ("dev", "prod"):
            result = CliRunner().invoke(app, ["build", "--env", env])
            assert result.exit_code == 0, result.output
    with duckdb.connect(str(root / "target" / "dev.duckdb"), read_only=True) as con:
        owner_month = con.execute(
            f"select strftime(max(month), '%Y-%m') from {SCHEMA}.rep_owner_funnel_monthly where owner_id = ?", [int(first[0])]
        ).fetchone()
        reason_month = con.execute(
            f"select strftime(max(month), '%Y-%m') from {SCHEMA}.rep_lost_reasons_monthly where lost_reason_id = 1"
        ).fetchone()
    with duckdb.connect(str(root / "target" / "prod.duckdb")) as con:  # parity then shows the owner's rows
        con.execute(
            "update prod_pipedrive_analytics.rep_owner_funnel_monthly set deals_count = deals_count + 1 where owner_id = ?",
            [int(first[0])],
        )
    assert owner_month and owner_month[0] and reason_month and reason_month[0]
    return {"root": str(root), "owner_month": owner_month[0], "reason_month": reason_month[0]}


def in_terminal(root: str, *args: str) -> tuple[int, str]:
    """`funnel args` run in a pseudo-terminal 300 columns wide: its exit code and everything
    the terminal received (stdout and stderr)."""
    main, secondary = pty.openpty()
    env = {**os.environ, "COLUMNS": "300", "LINES": "60", "TERM": "xterm-256color"}
    env.pop("NO_COLOR", None)
    env.pop("FUNNEL_RAW_DATA", None)
    env.pop("FUNNEL_PROJECT_DIR", None)
    funnel = shutil.which("funnel", path=str(Path(sys.executable).parent)) or "funnel"
    process = subprocess.Popen([funnel, *args], cwd=root, stdin=subprocess.DEVNULL, stdout=secondary, stderr=secondary, env=env)
    os.close(secondary)
    received = b""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([main], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(main, 1 << 16)
            except OSError:  # the terminal closed: the command has ended
                break
            if not chunk:
                break
            received += chunk
        elif process.poll() is not None:
            break
    os.close(main)
    code = process.wait(timeout=30)
    return code, received.decode("utf-8", errors="replace").replace("\r\n", "\n")


def _owner_rows(months: dict[str, str]) -> list[str]:
    return ["show", "--model", "rep_owner_funnel_monthly", "--limit", "0", "--month", months["owner_month"]]


COMMANDS = {
    "show": (lambda m: _owner_rows(m), [OWNER]),
    "show-summary": (lambda m: ["show", "--summary", "--month", m["reason_month"]], [REASON]),
    "show-compare": (lambda m: ["show", "--compare", "prod"], [KPI]),
    "show-lost-reasons": (lambda m: ["show", "--model", "rep_lost_reasons_monthly", "--limit", "0"], [REASON]),
    "show-csv": (lambda m: [*_owner_rows(m), "--format", "csv"], [OWNER]),
    "test-failures": (lambda m: ["test", "--failures"], [OWNER]),  # its first 40 characters, as failing rows show
    "models": (lambda m: ["models"], [LAYER]),
    "status": (lambda m: ["status"], [FOLDER]),
    "parity": (lambda m: ["parity", "--env", "prod", "--against", "dev", "--select", "rep_owner_funnel_monthly"], [OWNER]),
    "build": (lambda m: ["build", "--full-refresh"], [FOLDER]),
}


@pytest.mark.parametrize("command", sampled(list(COMMANDS), {"show", "test-failures"}))
def test_text_from_the_export_reaches_a_terminal_as_text(hostile: dict[str, str], command: str) -> None:
    args, texts = COMMANDS[command]
    code, shown = in_terminal(hostile["root"], *args(hostile))
    assert code in (0, 1), shown  # parity finds the changed rows: exit 1
    sent = [seq for seq in SENT if seq in shown]
    assert sent == [], f"funnel {command} sent {sent} to the terminal:\n{shown!r}"
    for text in texts:  # shown whole, escapes visible, rich markup as the brackets it is
        expected = printable(text)[:40] if command == "test-failures" else printable(text)
        assert expected in shown, f"{expected!r} not in:\n{shown}"
    assert "⚠" not in shown  # :warning: is text, not an emoji


def test_csv_and_json_into_a_pipe_stay_exact(hostile: dict[str, str], runner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(hostile["root"])
    monkeypatch.delenv("FUNNEL_RAW_DATA", raising=False)
    monkeypatch.delenv("FUNNEL_PROJECT_DIR", raising=False)
    as_csv = runner.invoke(app, [*_owner_rows(hostile), "--format", "csv"])
    assert as_csv.exit_code == 0, as_csv.output
    assert OWNER in as_csv.stdout
    as_json = runner.invoke(app, [*_owner_rows(hostile), "--format", "json"])
    assert OWNER in {row["owner_name"] for row in json.loads(as_json.stdout)}
