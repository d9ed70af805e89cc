"""Every kind of bad CSV: one clear Error: line and an unchanged report, or a build that
goes on and says what is suspicious. The cases live in tests/data/bad_csv/cases.toml."""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

import pytest

from funnel.cli import app
from funnel.generate import generate

from .conftest import DATA, read_report

CASES_DIR = DATA / "bad_csv"
CASES = tomllib.loads((CASES_DIR / "cases.toml").read_text())


@pytest.fixture(scope="module")
def small_export(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export")
    generate(out, deals=25, seed=7)
    return out


@pytest.fixture
def good_build(project, runner, small_export):
    shutil.rmtree(project / "raw_data")
    shutil.copytree(small_export, project / "raw_data")
    result = runner.invoke(app, ["build"])
    assert result.exit_code == 0, result.output
    database = project / "target" / "dev.duckdb"
    return database, read_report(database), database.stat().st_mtime_ns


def assert_one_error_line(result, words: str) -> None:
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    assert errors[0] == lines[-1]
    assert words in errors[0]
    assert "Traceback" not in result.output + result.stderr


@pytest.mark.parametrize("case", sorted(CASES), ids=str)
def test_bad_input(project, runner, good_build, case):
    spec = CASES[case]
    database, report_before, mtime_before = good_build
    target = project / "raw_data" / spec["replaces"]
    if case == "missing_file":
        target.unlink()
    else:
        shutil.copyfile(CASES_DIR / f"{case}.csv", target)

    result = runner.invoke(app, ["build"])

    if spec["outcome"] == "error":
        assert result.exit_code == 1, result.output
        assert_one_error_line(result, spec["words"])
        assert database.stat().st_mtime_ns == mtime_before
        assert read_report(database) == report_before
    else:
        assert result.exit_code == 0, result.output
        warned = [line for line in result.stderr.splitlines() if "WARN" in line and "test" in line]
        if spec["outcome"] == "warn":
            assert any(spec["words"] in line for line in warned), result.stderr
        assert "ERROR=0" in result.stderr
    assert not list(database.parent.glob(".*.tmp*")), "a temporary build file was left behind"


def test_every_case_has_a_file_and_every_file_a_case():
    files = {p.stem for p in CASES_DIR.glob("*.csv")}
    assert files == set(CASES) - {"missing_file"}
    for case, spec in CASES.items():
        assert spec["outcome"] in {"error", "warn", "ok"}, case
        assert spec["why"], case


@pytest.mark.parametrize(("length", "outcome"), [(200_000, 0), (3_000_000, 1)], ids=["200kB-ok", "3MB-error"])
def test_very_long_field(project, runner, good_build, length, outcome):
    database, report_before, _ = good_build
    users = project / "raw_data" / "users.csv"
    users.write_text(f"id,name,email,modified\n1,{'A' * length},a@example.org,2024-01-05 10:00:00.000001\n")
    result = runner.invoke(app, ["build"])
    assert result.exit_code == outcome, result.output
    if outcome:
        assert_one_error_line(result, "users.csv line 2")
    assert read_report(database) == report_before


def test_the_docs_list_every_case_with_its_outcome():
    doc = (CASES_DIR.parent.parent.parent / "docs" / "bad-input.md").read_text()
    for case, spec in CASES.items():
        row = next((line for line in doc.splitlines() if line.startswith(f"| `{case}` |")), None)
        assert row is not None, f"docs/bad-input.md has no row for {case}"
        assert f"| {spec['outcome']} |" in row


def test_a_header_that_is_not_csv_is_one_clear_error(project, runner, good_build):
    # Found by the property test: a carriage return inside the header line.
    database, report_before, _ = good_build
    (project / "raw_data" / "stages.csv").write_bytes(b"stage_id\r,stage_name\n1,Lead Generation\n")
    result = runner.invoke(app, ["build"])
    assert result.exit_code == 1
    assert_one_error_line(result, "stages.csv line 1: the header is not valid CSV")
    assert read_report(database) == report_before
