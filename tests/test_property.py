"""Property: whatever bytes a CSV holds, funnel exits 0 or 1 with no traceback, and a
failed build leaves the last good report exactly as it was."""

from __future__ import annotations

import shutil

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from funnel.cli import app
from funnel.pipedrive.sample import generate
from funnel.project.sources import SOURCES, TS, TS_ISO, TS_MICRO
from funnel.project.values import Rule

from .conftest import read_report

FILES = [s.file_name for s in SOURCES]
NASTY = ["", ",", '"', '""', "\n", "\r\n", "\x00", "\xff", "é", "12x45", "2024-02-30 10:00:00", "True", "yes", "-", " "]

pytestmark = pytest.mark.slow  # hundreds of generated exports: CI runs it


@st.composite
def mutated(draw):
    """A small valid file with a few random edits: inserted, deleted or replaced bytes."""
    name = draw(st.sampled_from(FILES))
    edits = draw(
        st.lists(
            st.tuples(
                st.sampled_from(["insert", "delete", "replace", "truncate"]),
                st.floats(0, 1),
                st.one_of(st.sampled_from(NASTY), st.text(max_size=8)),
            ),
            min_size=1,
            max_size=4,
        )
    )
    return name, edits


def apply(data: bytes, edits) -> bytes:
    for kind, where, text in edits:
        at = int(where * len(data))
        raw = text.encode("utf-8", "surrogatepass") if text != "\xff" else b"\xff"
        if kind == "insert":
            data = data[:at] + raw + data[at:]
        elif kind == "delete":
            data = data[:at] + data[at + 1 + len(raw) :]
        elif kind == "replace":
            data = data[:at] + raw + data[at + len(raw) :]
        else:
            data = data[:at]
    return data


@pytest.fixture
def small_project(project, tmp_path):
    export = tmp_path / "export"
    generate(export, deals=15, seed=3)
    shutil.rmtree(project / "raw_data")
    shutil.copytree(export, project / "raw_data")
    return project


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=mutated())
@example(case=("deal_changes.csv", [("insert", 0.0, "\x1e")]))  # a control byte once split the Error: line
def test_malformed_csv_never_crashes_or_damages_the_report(small_project, runner, case):
    name, edits = case
    raw = small_project / "raw_data"
    pristine = raw.with_name("pristine")
    if not pristine.exists():
        shutil.copytree(raw, pristine)
        assert runner.invoke(app, ["build"]).exit_code == 0
    shutil.rmtree(raw)
    shutil.copytree(pristine, raw)
    (raw / name).write_bytes(apply((pristine / name).read_bytes(), edits))
    database = small_project / "target" / "dev.duckdb"
    before = read_report(database)

    result = runner.invoke(app, ["build"])

    assert result.exit_code in (0, 1), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    if result.exit_code == 1:
        assert result.stderr.strip().splitlines()[-1].startswith("Error: "), result.stderr
        assert read_report(database) == before
    assert not list(database.parent.glob(".*.tmp*"))


# The value rules exist twice: as SQL (the fast check while loading) and as Python (the
# slow scan that finds the line). If they disagreed, a bad value could pass the load, or
# stop it with no line to show. Fed near-misses of good values, they must agree.
RULES = [
    Rule.of("BIGINT"),
    Rule.of("INTEGER"),
    Rule.of("DECIMAL(3,1)"),
    Rule.of("BOOLEAN"),
    Rule.of("DATE"),
    Rule.of("TIMESTAMP", TS),
    Rule.of("TIMESTAMP", TS_ISO),
    Rule.of("TIMESTAMP", TS_MICRO),
]
GOOD = [
    "0",
    "-0",
    "007",
    "12",
    "-12",
    "9223372036854775807",
    "2147483648",
    "2.0",
    "99.9",
    "true",
    "FALSE",
    "2024-01-05",
    "2024-02-29 23:59:59",
    "2024-01-05T10:00:00",
    "2024-01-05 10:00:00.000120",
    "1970-01-01 00:00:00",
]
EDITS = list("0123456789-+.eExXb_ :T\t\n") + ["٣", "０", "infinity", "epoch", "Z", "+02:00", " BC", "00"]


@st.composite
def near_misses(draw):
    text = draw(st.sampled_from(GOOD))
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(text)))
        edit = draw(st.sampled_from(EDITS))
        kind = draw(st.sampled_from(["insert", "replace", "delete"]))
        if kind == "insert":
            text = text[:at] + edit + text[at:]
        elif kind == "replace":
            text = text[:at] + edit + text[at + 1 :]
        else:
            text = text[:at] + text[at + 1 :]
    return text


@pytest.fixture(scope="module")
def con():
    import duckdb

    with duckdb.connect() as connection:
        yield connection


@pytest.mark.slow
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.one_of(near_misses(), st.text(min_size=1, max_size=12)))
@example(text="2024-01-5  10:00:00")
@example(text="2024-01-05 10:00:00.5")
@example(text="1e2")
@example(text="2100-12-31 23:59:59.999999")
@example(text="1970-01-01")
def test_sql_and_python_value_rules_agree(con, text):
    for rule in RULES:
        assert rule is not None
        parsed = rule.sql_parse("v")
        checks = f"coalesce({rule.sql_ok('v', parsed)}, false), coalesce({rule.sql_ok_once('v')}, false)"
        sql_ok, sql_ok_once = con.execute(f"select {checks} from (select ?::varchar as v)", [text]).fetchone()
        assert sql_ok == sql_ok_once == (rule.problem(text) is None), (rule, text)
