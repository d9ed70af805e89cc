"""Terminal output compared with golden files, rendered colourless at a fixed width.

To accept a deliberate change of the output: FUNNEL_UPDATE_GOLDEN=1 pytest tests/test_golden.py
"""

from __future__ import annotations

import io
import os

import pytest
from rich.console import Console

from funnel.build.runner import build
from funnel.cli.tables import rich_table
from funnel.outputs import query as report
from funnel.project.config import load_config
from funnel.project.manifest import compile

from .conftest import DATA

GOLDEN = DATA / "golden"


def render(table) -> str:
    console = Console(width=100, file=io.StringIO(), color_system=None, legacy_windows=False)
    console.print(rich_table(table))
    return console.file.getvalue()  # type: ignore[attr-defined]


@pytest.fixture
def built_env(sample_project):
    root = load_config(sample_project)
    env = root.environment("dev")
    build(compile(root, env))
    return root, env


def check(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("FUNNEL_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"output differs from {path}"


def test_show_one_month(built_env):
    _, env = built_env
    check("show_2024-02.txt", render(report.show(env, month="2024-02")))


def test_compare_two_environments(built_env):
    root, env = built_env
    prod = root.environment("prod")
    build(compile(root, prod))
    check("compare_2024-03.txt", render(report.compare(env, prod, month="2024-03")))


def test_bars_are_relative_to_each_months_largest_step():
    from datetime import date

    from funnel.cli.tables import _bars
    from funnel.outputs.query import Table

    jan, feb = date(2024, 1, 1), date(2024, 2, 1)
    rows = [(jan, "a", 1, 100), (jan, "b", 2, 50), (feb, "a", 1, 10), (feb, "b", 2, 10), (feb, "c", 3, 1)]
    bars = _bars(Table(("month", "kpi_name", "funnel_step", "deals_count"), rows, ""), width=10)
    assert [len(b) for b in bars] == [10, 5, 10, 10, 1]
    assert _bars(Table(("stage_id", "stage_name"), [(1, "x")], "")) == []


def test_show_summary_of_one_month(built_env):
    from funnel.cli.tables import rich_summary

    _, env = built_env
    console = Console(width=100, file=io.StringIO(), color_system=None, legacy_windows=False)
    for renderable in rich_summary(report.summary(env, "2024-02")):
        console.print(renderable)
    check("show_summary_2024-02.txt", console.file.getvalue())  # type: ignore[attr-defined]
