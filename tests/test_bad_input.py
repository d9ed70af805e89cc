"""Every kind of bad CSV: one clear Error: line and an unchanged report, or a build that
goes on and says what is suspicious. The cases live in tests/data/bad_csv/cases.toml."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from funnel.cli import app
from funnel.pipedrive.sample import generate

from .conftest import DATA, build_once, read_report, sampled, with_build_of

CASES_DIR = DATA / "bad_csv"
CASES = tomllib.loads((CASES_DIR / "cases.toml").read_text())


@pytest.fixture(scope="module")
def small_export(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export")
    generate(out, deals=25, seed=7)
    return out


@pytest.fixture(scope="module")
def small_build(tmp_path_factory, small_export) -> Path:
    return build_once(tmp_path_factory, small_export)


@pytest.fixture
def good_build(project, small_export, small_build):
    shutil.rmtree(project / "raw_data")
    shutil.copytree(small_export, project / "raw_data")
    with_build_of(small_build, project)
    database = project / "target" / "dev.duckdb"
    return database, read_report(database), database.stat().st_mtime_ns


def assert_one_error_line(result, words: str) -> None:
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    assert errors[0] == lines[-1]
    assert words in errors[0]
    assert "Traceback" not in result.output + result.stderr


# Each kind of fault once by default; every case in CI.
QUICK_CASES = {"missing_file", "not_utf8", "unclosed_quote", "deal_id_hex", "change_time_infinity", "mixed_line_ends"}


@pytest.mark.parametrize("case", sampled(sorted(CASES), QUICK_CASES))
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


@pytest.mark.parametrize(("length", "outcome"), sampled([(200_000, 0), (3_000_000, 1)], {"3MB-error"}, ["200kB-ok", "3MB-error"]))
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


@pytest.mark.parametrize(
    ("row", "words"),
    [
        ("2.05,Step 2: Qualified Lead,2,", "funnel_steps.csv line 3, column funnel_step: '2.05' is not a decimal number"),
        ("2.0,Step 2: Qualified Lead,2.0,", "funnel_steps.csv line 3, column stage_id: '2.0' is not a whole number"),
        ("2,Step 2: Qualified Lead, 2,", "funnel_steps.csv line 3, column stage_id: ' 2' is not a whole number"),
    ],
    ids=["decimal-rounded", "stage-id-decimal", "stage-id-space"],
)
def test_seed_values_follow_the_same_rules(project, runner, good_build, row, words):
    # DuckDB would round 2.05 to step 2.1 and read 2.0 as stage 2: seeds are loaded by the
    # same code as sources, so they follow the same value rules.
    database, report_before, _ = good_build
    seed = project / "sql" / "seeds" / "funnel_steps.csv"
    lines = seed.read_text().splitlines()
    lines[2] = row
    seed.write_text("\n".join(lines) + "\n")
    result = runner.invoke(app, ["build"])
    assert result.exit_code == 1, result.output
    assert_one_error_line(result, words)
    assert read_report(database) == report_before


@pytest.mark.parametrize(
    ("value", "outcome"),
    sampled([("true", 0), ("FALSE", 0), ("yes", 1), ("1", 1), ("t", 1)], {"FALSE", "yes"}, ["true", "FALSE", "yes", "1", "t"]),
)
def test_a_boolean_seed_column_takes_only_true_or_false(project, runner, good_build, value, outcome):
    seeds = project / "sql" / "seeds"
    (seeds / "seeds.toml").write_text(
        (seeds / "seeds.toml").read_text() + '\n[flags]\ncolumns = { name = "VARCHAR", is_on = "BOOLEAN" }\n'
    )
    (seeds / "flags.csv").write_text(f"name,is_on\na,true\nb,{value}\n")
    result = runner.invoke(app, ["build"])
    assert result.exit_code == outcome, result.output
    if outcome:
        assert_one_error_line(result, f"flags.csv line 3, column is_on: '{value}' is not true or false")


def test_the_line_of_a_bad_value_counts_lines_not_records(project, runner, good_build):
    # A quoted newline makes one record span two lines; the editor's line is what helps.
    users = project / "raw_data" / "users.csv"
    users.write_text(
        "id,name,email,modified\n"
        '1,"Ana\nMaria",ana@example.org,2024-01-05 10:00:00.000001\n'
        "2,Bo,bo@example.org,2024-01-05 10:00:00.000001\n"
        "3,Cy,cy@example.org,2024-13-05 10:00:00.000001\n"
    )
    result = runner.invoke(app, ["build"])
    assert result.exit_code == 1
    assert_one_error_line(result, "users.csv line 5, column modified: '2024-13-05 10:00:00.000001' is not a timestamp")


def test_several_bad_values_name_the_first_and_count_the_rest(project, runner, good_build):
    changes = project / "raw_data" / "deal_changes.csv"
    rows = changes.read_text().splitlines()
    rows[4] = "12.5" + rows[4][rows[4].index(",") :]
    rows[2] = rows[2][: rows[2].rindex(",")] + ",1e2" if ",stage_id," in rows[2] else rows[2].replace(",20", ",1e2 20", 1)
    changes.write_text("\n".join(rows) + "\n")
    result = runner.invoke(app, ["build"])
    assert result.exit_code == 1
    assert_one_error_line(result, "deal_changes.csv line 3, column ")
    assert "(1 more bad line)" in result.stderr


def run_build(project: Path) -> subprocess.CompletedProcess[str]:
    """A real process with a timeout: the bug these tests guard against is a hang."""
    return subprocess.run([sys.executable, "-m", "funnel", "build"], cwd=project, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("kind", sampled(["named-pipe", "device"], {"named-pipe"}))
def test_a_source_that_is_not_a_regular_file_is_refused_not_waited_for(project, good_build, kind):
    database, report_before, _ = good_build
    stages = project / "raw_data" / "stages.csv"
    stages.unlink()
    if kind == "named-pipe":
        os.mkfifo(stages)  # nobody writes to it: reading it would block for ever
    else:
        stages.symlink_to("/dev/zero")  # endless bytes, no newline
    result = run_build(project)
    assert result.returncode == 1, result.stderr
    expected = "a named pipe" if kind == "named-pipe" else "a device"
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .endswith(f"stages.csv: is {expected}, not a regular file; save the export as a plain CSV file.")
    )
    assert "Traceback" not in result.stderr
    assert read_report(database) == report_before


def test_a_link_to_a_regular_file_is_read(project, runner, good_build, tmp_path):
    stages = project / "raw_data" / "stages.csv"
    elsewhere = tmp_path / "stages-elsewhere.csv"
    shutil.move(stages, elsewhere)
    stages.symlink_to(elsewhere)
    assert runner.invoke(app, ["build"]).exit_code == 0


@pytest.mark.parametrize(
    ("header", "words"),
    [
        (
            ",".join(["deal_id", "change_time", "changed_field_key", "new_value"] + [f"c{i}" for i in range(100_000)]),
            "unexpected column(s) c0, c1, c2, c3, c4 and 99995 more",
        ),
        (
            ",".join(["deal_id", "change_time", "changed_field_key", "new_value"] + [f"c{i}" for i in range(200_000)]),
            "deal_changes.csv line 1: the header is longer than 1 MB",
        ),
        ("deal_id,change_time,changed_field_key," + "N" * 100_000, "column 'new_value' is named 'NNNN"),
        ("deal_id,change_time," + ",".join(["changed_field_key"] * 3) + ",new_value", "columns are in another order"),
    ],
    ids=["100k-columns", "200k-columns", "100kB-column-name", "repeated-column"],
)
def test_a_huge_header_is_quoted_short(project, runner, good_build, header, words):
    (project / "raw_data" / "deal_changes.csv").write_text(header + "\n1,2024-01-05 10:00:00,stage_id,1\n")
    result = runner.invoke(app, ["build"])
    assert result.exit_code == 1
    assert_one_error_line(result, words)
    assert len(result.stderr.strip().splitlines()[-1]) < 500, len(result.stderr)


def test_a_huge_value_is_quoted_short(project, runner, good_build):
    changes = project / "raw_data" / "deal_changes.csv"
    changes.write_text(changes.read_text() + "1,2024-01-05 10:00:00,stage_id," + "9" * 100_000 + "\n")
    result = runner.invoke(app, ["build"])
    assert result.exit_code == 1
    assert_one_error_line(result, "column new_value (changed_field_key stage_id): '99999")
    assert len(result.stderr.strip().splitlines()[-1]) < 500, len(result.stderr)
