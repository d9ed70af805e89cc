"""Funnel definitions (issue 12): each var on a hand-built export counted by hand, their
combinations on generated exports against a plain-Python formulation, and the errors a
wrong value or a near-miss name gives."""

from __future__ import annotations

import csv
import itertools
import shutil
from collections import defaultdict
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import duckdb
import pytest

from funnel.build.runner import build
from funnel.cli import app
from funnel.pipedrive.sample import generate
from funnel.project.config import load_config
from funnel.project.manifest import compile

from .conftest import ENVIRONMENTS, REPO, sampled

SCHEMA = "public_pipedrive_analytics"
JAN, FEB, MAR = date(2024, 1, 1), date(2024, 2, 1), date(2024, 3, 1)
STEPS = ("1.0", "2.0", "2.1", "3.0", "3.1", "4.0", "5.0", "6.0", "7.0", "8.0", "9.0")

# Five deals; s1 = an entry into stage 1 (step 1.0) and so on.
#   201 created 01-05; s1 01-10, s2 01-20, s1 again 02-05, s2 again 03-03
#   202 created 01-15 (the instant of its s1) and again 03-01; s1 01-15, s3 01-31 23:30 UTC
#       (02-01 00:30 in Berlin), skipping s2; second lifecycle: s1 03-02, s3 03-05
#   203 no add_time; s1 02-10, s4 02-12 (skips s2, s3), s1 again 02-20
#   204 s1 01-02 before its creation 01-03; s1 again 02-03; created again 03-10; s2 03-11,
#       s1 03-12
#   205 no add_time; s3 01-20, then s1 02-02
# Owners (user_id rows): 201 user 1 from 01-05, user 2 from 02-01; 202 user 2 from 01-15 (the
# instant of its s1); 204 user 1 from 01-03 (after its first s1), user 3 from 03-10; 203 and
# 205 none.
DEAL_CHANGES = """\
deal_id,change_time,changed_field_key,new_value
201,2024-01-05 00:00:00,add_time,2024-01-05T00:00:00
201,2024-01-05 00:00:00,user_id,1
201,2024-02-01 00:00:00,user_id,2
202,2024-01-15 00:00:00,user_id,2
204,2024-01-03 00:00:00,user_id,1
204,2024-03-10 00:00:00,user_id,3
201,2024-01-10 00:00:00,stage_id,1
201,2024-01-20 00:00:00,stage_id,2
201,2024-02-05 00:00:00,stage_id,1
201,2024-03-03 00:00:00,stage_id,2
202,2024-01-15 00:00:00,add_time,2024-01-15T00:00:00
202,2024-01-15 00:00:00,stage_id,1
202,2024-01-31 23:30:00,stage_id,3
202,2024-03-01 00:00:00,add_time,2024-03-01T00:00:00
202,2024-03-02 00:00:00,stage_id,1
202,2024-03-05 00:00:00,stage_id,3
203,2024-02-10 00:00:00,stage_id,1
203,2024-02-12 00:00:00,stage_id,4
203,2024-02-20 00:00:00,stage_id,1
204,2024-01-02 00:00:00,stage_id,1
204,2024-01-03 00:00:00,add_time,2024-01-03T00:00:00
204,2024-02-03 00:00:00,stage_id,1
204,2024-03-10 00:00:00,add_time,2024-03-10T00:00:00
204,2024-03-11 00:00:00,stage_id,2
204,2024-03-12 00:00:00,stage_id,1
205,2024-01-20 00:00:00,stage_id,3
205,2024-02-02 00:00:00,stage_id,1
"""
# Calls (meeting -> step 2.1, sc_2 -> step 3.1): 201 done meetings 01-25 and 02-25 and a
# meeting not done 03-10; 202 a done sc_2 02-29 23:30 UTC (03-01 in Berlin) and one not
# done 01-20; 203 a meeting not done 02-15.
ACTIVITY = """\
activity_id,type,assigned_to_user,deal_id,done,due_to
1,meeting,1,201,True,2024-01-25T09:00:00
2,meeting,1,201,True,2024-02-25T09:00:00
3,meeting,1,201,False,2024-03-10T09:00:00
4,sc_2,2,202,True,2024-02-29T23:30:00
5,sc_2,2,202,False,2024-01-20T09:00:00
6,meeting,3,203,False,2024-02-15T09:00:00
"""
USERS = """\
id,name,email,modified
1,Ann Lee,ann@example.org,2024-01-01 00:00:00.000000
2,Bob Ray,bob@example.org,2024-01-01 00:00:00.000000
3,Cy Dunn,cy@example.org,2024-01-01 00:00:00.000000
"""

# Today's report of the export above (first entries, UTC, done calls, every month):
# step 1 first entries 201, 202, 204 in January, 203 and 205 in February; step 2 201 in
# January, 204 in March; step 3 202 and 205 in January; step 4 203; done meetings of 201 in
# January and February; 202's done sc_2 in February.
DEFAULT = {
    JAN: {"1.0": 3, "2.0": 1, "2.1": 1, "3.0": 2},
    FEB: {"1.0": 2, "2.1": 1, "3.1": 1, "4.0": 1},
    MAR: {"2.0": 1},
}


def _with(base: dict, **changes: dict[str, int]) -> dict:
    out = {month: dict(steps) for month, steps in base.items()}
    for name, steps in changes.items():
        month = {"jan": JAN, "feb": FEB, "mar": MAR}[name]
        out.setdefault(month, {}).update(steps)
    return {m: {s: c for s, c in steps.items() if c} for m, steps in out.items()}


EXPECTED: dict[str, tuple[dict[str, Any], dict]] = {
    # every: step 1 in February 201 (02-05), 203 (twice, once counted), 204 (02-03), 205;
    # in March 202 and 204. Step 2 in March 201 (03-03) and 204. Step 3 in March 202.
    "stage_entry=every": (
        {"stage_entry": "every"},
        _with(DEFAULT, feb={"1.0": 4}, mar={"1.0": 2, "2.0": 2, "3.0": 1}),
    ),
    # first_per_lifecycle: 202's second lifecycle (03-01) enters s1 and s3 again in March;
    # 204's s1 01-02 (before its first add_time) and 02-03 are its first lifecycle, its
    # second (03-10) enters s2 and s1 in March. 201's and 203's re-entries are one lifecycle.
    "stage_entry=first_per_lifecycle": (
        {"stage_entry": "first_per_lifecycle"},
        _with(DEFAULT, mar={"1.0": 2, "2.0": 1, "3.0": 1}),
    ),
    # backfill: step 1 is each deal's earliest entry anywhere: 205's s3 01-20 moves it to
    # January (4 deals); step 2 adds 202 (s3) and 205 (s3) in January and 203 (s4) in
    # February; step 3 adds 203 (s4) in February.
    "backfill_skipped_stages=true": (
        {"backfill_skipped_stages": True},
        _with(DEFAULT, jan={"1.0": 4, "2.0": 3}, feb={"1.0": 1, "2.0": 1, "3.0": 1}),
    ),
    # Berlin: 202's s3 01-31 23:30 UTC is February there, its sc_2 02-29 23:30 is March.
    "timezone=Europe/Berlin": (
        {"timezone": "Europe/Berlin"},
        _with(DEFAULT, jan={"3.0": 1}, feb={"3.0": 1, "3.1": 0}, mar={"3.1": 1}),
    ),
    # all calls: 201's meeting not done in March, 202's sc_2 not done in January, 203's
    # meeting not done in February (beside 201's done one).
    "calls=all": (
        {"calls": "all"},
        _with(DEFAULT, jan={"3.1": 1}, feb={"2.1": 2}, mar={"2.1": 1}),
    ),
    # first calls: 201's meetings count once, in January.
    "call_months=first": (
        {"call_months": "first"},
        _with(DEFAULT, feb={"2.1": 0}),
    ),
    # both: 202's first sc_2 is the one not done in January; 201's first meeting January,
    # 203's February.
    "calls=all+call_months=first": (
        {"calls": "all", "call_months": "first"},
        _with(DEFAULT, jan={"3.1": 1}, feb={"3.1": 0}),
    ),
}


def write_export(raw: Path) -> None:
    raw.mkdir(parents=True, exist_ok=True)
    (raw / "deal_changes.csv").write_text(DEAL_CHANGES)
    (raw / "activity.csv").write_text(ACTIVITY)
    (raw / "users.csv").write_text(USERS)
    for name in ("activity_types.csv", "fields.csv", "stages.csv"):  # stages 1-9
        shutil.copy(REPO / "raw_data" / name, raw / name)


@pytest.fixture
def tiny(tmp_path, monkeypatch) -> Path:
    """A project with the repo's sql/ and the hand-built export (not built yet)."""
    root = tmp_path / "project"
    shutil.copytree(REPO / "sql", root / "sql")
    write_export(root / "raw_data")
    (root / "environments.toml").write_text(ENVIRONMENTS)
    monkeypatch.chdir(root)
    monkeypatch.delenv("FUNNEL_RAW_DATA", raising=False)
    return root


def build_with(root: Path, variables: dict[str, Any], raw: Path | None = None) -> None:
    config = load_config(root)
    result = build(compile(config, config.environment("dev", raw), variables))
    assert result.count("ERROR") == 0


def report(root: Path, model: str = "rep_sales_funnel_monthly") -> list[tuple]:
    order = "month, funnel_step" if model == "rep_sales_funnel_monthly" else "all"
    with duckdb.connect(str(root / "target" / "dev.duckdb"), read_only=True) as con:
        return con.execute(f"select * from {SCHEMA}.{model} order by {order}").fetchall()


def as_rows(counts: dict) -> list[tuple]:
    return sorted((month, Decimal(step), count) for month, steps in counts.items() for step, count in steps.items())


def test_the_defaults_count_as_today(tiny):
    build_with(tiny, {})
    assert [(m, s, c) for m, _, s, c in report(tiny)] == as_rows(DEFAULT)


@pytest.mark.parametrize("case", list(EXPECTED))
def test_each_definition_by_hand(tiny, case):
    variables, expected = EXPECTED[case]
    build_with(tiny, variables)
    assert [(m, s, c) for m, _, s, c in report(tiny)] == as_rows(expected)


def test_zero_fill_by_hand(tiny):
    build_with(tiny, {"zero_fill": True})
    got = [(m, s, c) for m, _, s, c in report(tiny)]
    # January to March, every one of the 11 steps, 0 where no deal; the data tests pass.
    expected = sorted((m, Decimal(s), DEFAULT[m].get(s, 0)) for m in (JAN, FEB, MAR) for s in STEPS)
    assert got == expected
    assert sum(1 for row in got if row[2] == 0) == 3 * len(STEPS) - sum(len(v) for v in DEFAULT.values())


def test_timezone_and_calls_move_the_other_reports_too(tiny):
    build_with(tiny, {"timezone": "Europe/Berlin", "calls": "all"})
    funnel = {(m, s): c for m, _, s, c in report(tiny)}
    owners: dict[tuple, int] = defaultdict(int)
    for month, _, _, _, step, count in report(tiny, "rep_owner_funnel_monthly"):
        owners[(month, step)] += count
    # Each deal's calls here are one user's: per month and step the owners add up exactly.
    assert dict(owners) == funnel
    assert funnel[(MAR, Decimal("3.1"))] == 1 and funnel[(JAN, Decimal("3.1"))] == 1
    cohorts = {(r[0], r[1]): r[4] for r in report(tiny, "rep_deal_cohorts")}
    # 203 has no add_time (no cohort); 202 (January) reached 3.1; 201 (January) 2.1.
    assert cohorts[(JAN, Decimal("3.1"))] == 1
    conversion = {(r[0], r[1]) for r in report(tiny, "rep_stage_conversion")}
    assert (FEB, Decimal("3.0")) in conversion  # 202's s3 in Berlin's February


# --- the owners' funnel under each definition (issue 26, item 7) ----------------------------

ANN, BOB, CY, NOBODY = 1, 2, 3, None
# Stage steps of rep_owner_funnel_monthly: (month, step, owner) -> deals. Each deal counted
# by the report is credited to its owner at the entry counted (per deal, step and month the
# earliest): the latest user_id row at or before it, else the deal's earliest one.
OWNERS_FIRST = {
    # step 1: 201 01-10 (Ann), 202 01-15 (Bob, set at that instant), 204 01-02 (before its
    # first owner row: that row, Ann); 203 and 205 have no owner. Step 2: 201 01-20 (Ann),
    # 204 03-11 (Cy since 03-10). Step 3: 202 01-31 (Bob), 205. Step 4: 203.
    (JAN, "1.0", ANN): 2, (JAN, "1.0", BOB): 1, (FEB, "1.0", NOBODY): 2,
    (JAN, "2.0", ANN): 1, (MAR, "2.0", CY): 1,
    (JAN, "3.0", BOB): 1, (JAN, "3.0", NOBODY): 1,
    (FEB, "4.0", NOBODY): 1,
}  # fmt: skip
OWNERS_EXPECTED: dict[str, tuple[dict[str, Any], dict]] = {
    "stage_entry=first": ({}, OWNERS_FIRST),
    # every: February step 1 also 201 (02-05: Bob since 02-01), 204 (02-03: Ann), 203 and
    # 205; March step 1 202 (03-02: Bob) and 204 (03-12: Cy); step 2 201 (03-03: Bob) and
    # 204 (Cy) in March; step 3 202 again in March (Bob).
    "stage_entry=every": (
        {"stage_entry": "every"},
        {
            **OWNERS_FIRST,
            (FEB, "1.0", NOBODY): 2, (FEB, "1.0", BOB): 1, (FEB, "1.0", ANN): 1,
            (MAR, "1.0", BOB): 1, (MAR, "1.0", CY): 1,
            (MAR, "2.0", BOB): 1,
            (MAR, "3.0", BOB): 1,
        },
    ),
    # first_per_lifecycle: 202's second lifecycle enters s1 and s3 in March (Bob), 204's
    # enters s1 in March (Cy); its s2 03-11 was already its first s2.
    "stage_entry=first_per_lifecycle": (
        {"stage_entry": "first_per_lifecycle"},
        {**OWNERS_FIRST, (MAR, "1.0", BOB): 1, (MAR, "1.0", CY): 1, (MAR, "3.0", BOB): 1},
    ),
    # backfill: 205's s3 01-20 is its step 1, 2 and 3 in January (no owner); 202's s3
    # 01-31 its step 2 (Bob); 203's s4 02-12 its steps 2 and 3 (no owner).
    "backfill_skipped_stages=true": (
        {"backfill_skipped_stages": True},
        {
            (JAN, "1.0", ANN): 2, (JAN, "1.0", BOB): 1, (JAN, "1.0", NOBODY): 1, (FEB, "1.0", NOBODY): 1,
            (JAN, "2.0", ANN): 1, (JAN, "2.0", BOB): 1, (JAN, "2.0", NOBODY): 1, (FEB, "2.0", NOBODY): 1,
            (MAR, "2.0", CY): 1,
            (JAN, "3.0", BOB): 1, (JAN, "3.0", NOBODY): 1, (FEB, "3.0", NOBODY): 1,
            (FEB, "4.0", NOBODY): 1,
        },
    ),
}  # fmt: skip


def owner_credits(root: Path) -> dict[tuple, dict[tuple, int]]:
    """rep_owner_funnel_monthly as {(month, step, owner): deals}, stage steps and call steps apart."""
    stages: dict[tuple, int] = {}
    calls: dict[tuple, int] = {}
    for month, owner, _, _, step, count in report(root, "rep_owner_funnel_monthly"):
        (stages if step == int(step) else calls)[(month, str(step), owner)] = count
    return {"stages": stages, "calls": calls}


def owner_totals(root: Path) -> dict[tuple, int]:
    totals: dict[tuple, int] = defaultdict(int)
    for (month, step, _), count in owner_credits(root)["stages"].items():
        totals[(month, step)] += count
    return dict(totals)


def report_stage_counts(root: Path) -> dict[tuple, int]:
    return {(m, str(s)): c for m, _, s, c in report(root) if s == int(s) and c}


@pytest.mark.parametrize("case", list(OWNERS_EXPECTED))
def test_owner_funnel_by_hand_under_each_definition(tiny, case):
    variables, expected = OWNERS_EXPECTED[case]
    build_with(tiny, variables)
    assert owner_credits(tiny)["stages"] == expected
    assert owner_totals(tiny) == report_stage_counts(tiny)  # and so they add up to the report


@pytest.mark.parametrize(
    ("call_months", "expected"),
    [
        ("every", {(JAN, "2.1", ANN): 1, (FEB, "2.1", ANN): 1, (FEB, "3.1", BOB): 1}),
        ("first", {(JAN, "2.1", ANN): 1, (FEB, "3.1", BOB): 1}),
    ],
)
def test_owner_funnel_call_steps_follow_call_months(tiny, call_months, expected):
    # 201's done meetings (Ann) in January and February: with call_months = "first", only
    # January's counts, as in the report.
    build_with(tiny, {"call_months": call_months})
    assert owner_credits(tiny)["calls"] == expected


@pytest.mark.parametrize("case", list(OWNERS_EXPECTED))
def test_conversion_cohorts_are_what_the_report_counts_under_each_definition(tiny, case):
    # rep_stage_conversion's entered is the report's count of from_step that month, whatever
    # the definitions choose (show --summary puts them side by side).
    variables, _ = OWNERS_EXPECTED[case]
    build_with(tiny, variables)
    entered = {(r[0], str(r[1])): r[3] for r in report(tiny, "rep_stage_conversion")}
    counted = {k: v for k, v in report_stage_counts(tiny).items() if k[1] != "9.0"}
    assert entered == counted


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        # Default: January's step-1 deals 201, 202, 204: 201 and 204 entered s2 later. February's
        # 203 and 205 never did.
        ({}, {(JAN, "1.0"): (3, 2), (FEB, "1.0"): (2, 0)}),
        # every: February also counts 201 (s1 02-05, s2 03-03) and 204 (s1 02-03, s2 03-11).
        ({"stage_entry": "every"}, {(JAN, "1.0"): (3, 2), (FEB, "1.0"): (4, 2), (MAR, "1.0"): (2, 0)}),
        # backfill: 205's s3 01-20 is its step 1 and, at the same instant, its step 2; 202's s3
        # 01-31 passes step 2 after its s1; 203's s4 02-12 after its s1 02-10.
        ({"backfill_skipped_stages": True}, {(JAN, "1.0"): (4, 4), (FEB, "1.0"): (1, 1)}),
    ],
    ids=["first", "every", "backfill"],
)
def test_conversion_by_hand_under_the_definitions(tiny, variables, expected):
    build_with(tiny, variables)
    got = {(r[0], str(r[1])): (r[3], r[4]) for r in report(tiny, "rep_stage_conversion") if r[1] == 1}
    assert got == expected


def test_cohorts_count_skipped_stages_as_reached_with_backfill(tiny):
    # The January cohort (201, 202, 204): 202 skipped s2 for s3. Reached step 2: 201 and 204,
    # and with backfill_skipped_stages 202 too, as the report counts it.
    for variables, reached in (({}, 2), ({"backfill_skipped_stages": True}, 3)):
        build_with(tiny, variables)
        cohorts = {(r[0], str(r[1])): r[4] for r in report(tiny, "rep_deal_cohorts")}
        assert cohorts[(JAN, "2.0")] == reached and cohorts[(JAN, "1.0")] == 3


STAGE_ENTRIES = ["first", "every", "first_per_lifecycle"]


@pytest.fixture(scope="module")
def owners_export(tmp_path_factory) -> Path:
    """A generated export whose deals re-enter stages and start second lifecycles."""
    raw = tmp_path_factory.mktemp("owners") / "raw_data"
    generate(raw, deals=300, seed=2)
    return raw


@pytest.mark.parametrize("stage_entry", STAGE_ENTRIES)
def test_owners_add_up_to_the_report_under_each_stage_entry(tmp_path, monkeypatch, owners_export, stage_entry):
    # Issue 26.7: the owners' funnel credited first entries whatever stage_entry said, and
    # owner_funnel_adds_up was switched off for the other definitions.
    root = tmp_path / "project"
    shutil.copytree(REPO / "sql", root / "sql")
    (root / "environments.toml").write_text(ENVIRONMENTS)
    monkeypatch.chdir(root)
    config = load_config(root)
    result = build(compile(config, config.environment("dev", owners_export), {"stage_entry": stage_entry}))
    assert [r.status for r in result.tests if r.test.name == "owner_funnel_adds_up"] == ["PASS"]
    report_counts = report_stage_counts(root)
    assert owner_totals(root) == report_counts
    if stage_entry != "first":  # the export re-enters stages: this definition counts other entries
        build_with(root, {}, owners_export)
        assert report_stage_counts(root) != report_counts


@pytest.mark.parametrize("stage_entry", STAGE_ENTRIES)
def test_owner_funnel_adds_up_stops_a_build_whose_owners_do_not_add_up(tiny, runner, stage_entry):
    # The data test itself, under each definition: an owners' model that loses one owner's
    # step-1 deals stops the build.
    model = tiny / "sql" / "reporting" / "rep_owner_funnel_monthly.sql"
    text = model.read_text()
    assert text.count("select * from final\n") == 1
    model.write_text(
        text.replace(
            "select * from final\n",
            "select * from final\nwhere not (funnel_step = 1.0 and owner_id = 1)\n",
        )
    )
    result = runner.invoke(app, ["build", "--var", f"stage_entry={stage_entry}"])
    assert result.exit_code == 1, result.output
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("Error: ") and "owner_funnel_adds_up" in line


# --- combinations on generated exports, against plain Python ---------------------------


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def python_report(raw: Path, definitions: dict[str, Any]) -> list[tuple]:
    """rep_sales_funnel_monthly from the CSV rows with loops, as the README defines it."""
    entry = definitions.get("stage_entry", "first")
    zone = ZoneInfo(definitions.get("timezone", "UTC"))

    def month(t: datetime | None) -> date | None:
        if t is None:
            return None
        local = t.replace(tzinfo=UTC).astimezone(zone)
        return date(local.year, local.month, 1)

    seed = _read(REPO / "sql" / "seeds" / "funnel_steps.csv")
    step_of_stage = {int(s["stage_id"]): Decimal(s["funnel_step"]) for s in seed if s["stage_id"]}
    step_of_type = {s["activity_type"]: Decimal(s["funnel_step"]) for s in seed if s["activity_type"]}
    kpi = {Decimal(s["funnel_step"]): s["kpi_name"] for s in seed}
    entries: dict[int, list[tuple[datetime, Decimal]]] = defaultdict(list)
    starts: dict[int, list[datetime]] = defaultdict(list)
    for r in _read(raw / "deal_changes.csv"):
        deal, t = int(r["deal_id"]), datetime.fromisoformat(r["change_time"])
        if r["changed_field_key"] == "stage_id" and int(r["new_value"]) in step_of_stage:
            entries[deal].append((t, step_of_stage[int(r["new_value"])]))
        elif r["changed_field_key"] == "add_time":
            starts[deal].append(t)

    counted: set[tuple[date | None, Decimal, int]] = set()
    for deal, es in entries.items():
        if entry == "every":
            counted |= {(month(t), step, deal) for t, step in es}
            continue
        first: dict[tuple[Decimal, int], datetime] = {}
        for t, step in es:
            lifecycle = max(1, sum(1 for s in starts[deal] if s <= t)) if entry == "first_per_lifecycle" else 1
            first[(step, lifecycle)] = min(t, first.get((step, lifecycle), t))
        if definitions.get("backfill_skipped_stages"):
            reached = {step: t for (step, _), t in first.items()}
            first = {
                (s, 1): min(t for later, t in reached.items() if later >= s)
                for s in step_of_stage.values()
                if any(later >= s for later in reached)
            }
        counted |= {(month(t), step, deal) for (step, _), t in first.items()}

    calls: dict[tuple[int, Decimal], list[datetime | None]] = defaultdict(list)
    for a in _read(raw / "activity.csv"):
        if a["type"] in step_of_type and a["deal_id"] and (a["done"] == "True" or definitions.get("calls") == "all"):
            due = datetime.fromisoformat(a["due_to"]) if a["due_to"] else None
            calls[(int(a["deal_id"]), step_of_type[a["type"]])].append(due)
    for (deal, step), dues in calls.items():
        if definitions.get("call_months") == "first":
            known = [d for d in dues if d is not None]
            dues = [min(known)] if known else [None]
        counted |= {(month(d), step, deal) for d in dues}

    counts: dict[tuple[date | None, Decimal], int] = defaultdict(int)
    for m, step, _ in counted:
        counts[(m, step)] += 1
    if definitions.get("zero_fill"):
        months = sorted(m for m, _ in counts if m is not None)
        m = months[0]
        while m <= months[-1]:
            for step in kpi:
                counts.setdefault((m, step), 0)
            m = date(m.year + m.month // 12, m.month % 12 + 1, 1)
    rows = [(m, kpi[s], s, c) for (m, s), c in counts.items()]
    return sorted(rows, key=lambda r: (r[0] is None, r[0] or date.min, r[2]))


COMBINATIONS = [
    {},
    {"stage_entry": "every", "timezone": "America/New_York", "calls": "all"},
    {"stage_entry": "first_per_lifecycle", "call_months": "first", "zero_fill": True},
    {"backfill_skipped_stages": True, "timezone": "Asia/Kolkata", "call_months": "first", "calls": "all"},
    {"stage_entry": "first_per_lifecycle", "timezone": "Europe/Berlin", "zero_fill": True, "calls": "all"},
]


@pytest.mark.slow
@pytest.mark.parametrize("seed", [3, 11])
def test_combinations_match_a_python_formulation(tmp_path, monkeypatch, seed):
    raw = tmp_path / "export"
    generate(raw, deals=300, seed=seed)
    root = tmp_path / "project"
    shutil.copytree(REPO / "sql", root / "sql")
    (root / "environments.toml").write_text(ENVIRONMENTS)
    monkeypatch.chdir(root)
    for definitions in COMBINATIONS:
        build_with(root, definitions, raw)
        got = report(root)
        assert got == python_report(raw, definitions), definitions
        assert got


def test_python_formulation_agrees_with_the_hand_counts(tiny):
    for variables, expected in EXPECTED.values():
        assert [(m, s, c) for m, _, s, c in python_report(tiny / "raw_data", variables)] == as_rows(expected)


# --- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "var", "message"),
    [
        (
            "cli",
            "stage_entry=evry",
            'Error: --var stage_entry = "evry" is not allowed; use "first" or "every" or '
            "\"first_per_lifecycle\" (which entries into a stage count). Did you mean 'every'?",
        ),
        ("cli", "stage_entri=every", "Error: --var 'stage_entri' is not a funnel definition. Did you mean 'stage_entry'?"),
        (
            "cli",
            "timezone=Europe/Berln",
            "Error: --var timezone = 'Europe/Berln' is not an IANA time zone name such as "
            '"Europe/Berlin" or "UTC". Did you mean \'Europe/Berlin\'?',
        ),
        ("cli", "zero_fill=1", "Error: --var zero_fill = 1 is not allowed; use false or true"),
        ("file", 'calls = "every"', '{toml}: [vars] calls = "every" is not allowed; use "done" or "all"'),
        (
            "env",
            'call_month = "first"',
            "{toml}: [dev.vars] 'call_month' is not a funnel definition. Did you mean 'call_months'?",
        ),
        ("file", 'timezone = "UTC\'; drop table x; --"', "{toml}: [vars] timezone = "),
    ],
)
def test_a_wrong_definition_is_one_error_line_naming_where(tiny, runner, where, var, message):
    args = ["build"]
    if where == "cli":
        args += ["--var", var]
    elif where == "file":
        (tiny / "environments.toml").write_text(f"[vars]\n{var}\n\n" + ENVIRONMENTS)
    else:
        (tiny / "environments.toml").write_text(ENVIRONMENTS.replace("[prod]", f"[dev.vars]\n{var}\n\n[prod]"))
    result = runner.invoke(app, args)
    assert "Traceback" not in result.output
    if where == "cli":  # typed on the command line: a usage error (README's rule between 1 and 2)
        assert result.exit_code == 2
        assert result.stderr.startswith("Usage: ") and " build [OPTIONS]" in result.stderr
        message = message.replace("Error: --var ", "Error: Invalid value for '--var': ")
        assert result.stderr.strip().splitlines()[-1].startswith(message), result.stderr
    else:
        assert result.exit_code == 1
        assert result.stderr.count("\n") == 1
        message = message.replace("{toml}", f"Error: {tiny / 'environments.toml'}")
        assert result.stderr.startswith(message), result.stderr
    assert not (tiny / "target" / "dev.duckdb").exists()


def test_backfill_with_another_stage_entry_names_both_places(tiny, runner):
    (tiny / "environments.toml").write_text("[vars]\nbackfill_skipped_stages = true\n\n" + ENVIRONMENTS)
    result = runner.invoke(app, ["build", "--var", "stage_entry=every"])
    assert result.exit_code == 1
    assert '[vars] backfill_skipped_stages = true only works with stage_entry = "first", but --var sets ' in result.stderr


def test_other_var_names_stay_free_for_a_projects_own_models(tiny, runner):
    result = runner.invoke(app, ["build", "--var", "region=emea", "--var", "stage_entry=every"])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    ("a", "b"),
    sampled(
        list(itertools.combinations(["first", "every", "first_per_lifecycle"], 2)),
        {"first-every"},
        ["first-every", "first-first_per_lifecycle", "every-first_per_lifecycle"],
    ),
)
def test_a_changed_definition_reruns_the_report(tiny, a, b):
    build_with(tiny, {"stage_entry": a})
    first = report(tiny)
    build_with(tiny, {"stage_entry": b})
    assert report(tiny) != first


def test_a_changed_var_reruns_every_model_that_reads_it_whatever_select_says(tiny, runner):
    # --select with a changed var ran only the selected model, and the build recorded the var
    # for every model: show was titled stage_entry=every over the default counts.
    build_with(tiny, {})
    cli = runner.invoke(app, ["build", "--var", "stage_entry=every", "--select", "rep_stage_velocity"])
    assert cli.exit_code == 0, cli.output
    assert [(m, s, c) for m, _, s, c in report(tiny)] == as_rows(EXPECTED["stage_entry=every"][1])
    assert "built with definitions: stage_entry=every" in runner.invoke(app, ["show", "-f", "csv"]).stderr
    # Back to the defaults, with a selection that does not name the report either.
    cli = runner.invoke(app, ["build", "--select", "rep_stage_velocity"])
    assert cli.exit_code == 0, cli.output
    assert [(m, s, c) for m, _, s, c in report(tiny)] == as_rows(DEFAULT)
    assert "definitions" not in runner.invoke(app, ["show", "-f", "csv"]).stderr


def test_tests_rendered_with_new_vars_read_models_rerun_with_them(tiny, runner):
    # The data tests were rendered without zero_fill against a report still zero-filled:
    # deals_count_is_positive failed the build.
    build_with(tiny, {"zero_fill": True})
    cli = runner.invoke(app, ["build", "--select", "rep_stage_velocity"])
    assert cli.exit_code == 0, cli.output
    assert [(m, s, c) for m, _, s, c in report(tiny)] == as_rows(DEFAULT)


# --- which definitions a report was built with -------------------------------------------


@pytest.mark.slow
def test_show_says_which_definitions_the_build_counts_with(tiny, runner):
    assert runner.invoke(app, ["build", "--var", "stage_entry=every", "--var", "timezone=Europe/Berlin"]).exit_code == 0
    shown = runner.invoke(app, ["show"])
    assert "rep_sales_funnel_monthly · dev · stage_entry=every, timezone=Europe/Berlin" in shown.stdout
    as_csv = runner.invoke(app, ["show", "-f", "csv"])
    # csv stays plain data (header + rows); the note goes to stderr.
    rows = list(csv.reader(as_csv.stdout.splitlines()))
    assert rows[0] == ["month", "kpi_name", "funnel_step", "deals_count"]
    assert len(rows) - 1 == len(report(tiny))
    assert "built with definitions: stage_entry=every, timezone=Europe/Berlin" in as_csv.stderr
    assert runner.invoke(app, ["build"]).exit_code == 0
    default = runner.invoke(app, ["show", "-f", "csv"])
    assert "definitions" not in default.stderr and "stage_entry" not in runner.invoke(app, ["show"]).stdout


def test_compare_puts_two_definitions_side_by_side(tiny, runner):
    (tiny / "environments.toml").write_text(ENVIRONMENTS + '\n[prod.vars]\nstage_entry = "every"\n')
    assert runner.invoke(app, ["build"]).exit_code == 0
    assert runner.invoke(app, ["build", "--env", "prod"]).exit_code == 0
    result = runner.invoke(app, ["show", "--compare", "prod", "-f", "csv"])
    assert result.exit_code == 0, result.output
    assert "built with definitions: dev (default definitions) vs prod (stage_entry=every)" in result.stderr
    diff = {(r[0], r[2]): int(r[5]) for r in list(csv.reader(result.stdout.splitlines()))[1:]}
    # February, step 1: 2 deals' first entries (dev) against 4 deals entering (prod).
    assert diff[("2024-02-01", "1.0")] == 2 - 4


@pytest.mark.slow
def test_file_exports_carry_a_definitions_table_beside_the_models(tiny, runner, tmp_path):
    out = tmp_path / "out"
    assert runner.invoke(app, ["build", "--var", "calls=all", "--var", "zero_fill=true"]).exit_code == 0
    assert runner.invoke(app, ["export", "-f", "csv", "--out", str(out)]).exit_code == 0
    assert _read(out / "_funnel_definitions.csv") == [
        {"definition": "calls", "value": "all"},
        {"definition": "zero_fill", "value": "true"},
    ]
    funnel_rows = _read(out / "rep_sales_funnel_monthly.csv")
    assert len(funnel_rows) == 3 * len(STEPS)  # zero_fill: the data file stays plain csv
    assert runner.invoke(app, ["build"]).exit_code == 0
    assert runner.invoke(app, ["export", "-f", "csv", "--out", str(out)]).exit_code == 0
    assert not (out / "_funnel_definitions.csv").exists()  # defaults again: no stale note


@pytest.mark.postgres
@pytest.mark.slow
def test_postgres_tables_say_which_definitions_they_count_with(project, runner):
    from .test_export import _SKIP, PG, side_schemas

    if _SKIP:
        pytest.skip(_SKIP)
    import secrets

    import psycopg

    name = f"funnel_test_{secrets.token_hex(4)}"
    text = ENVIRONMENTS.replace('"public_pipedrive_analytics"', f'"{name}"')
    text += f'[dev.postgres]\nhost = "{PG["host"]}"\nport = {PG["port"]}\nuser = "{PG["user"]}"\ndbname = "{PG["dbname"]}"\n'
    (project / "environments.toml").write_text(text)
    query = "select obj_description(%s::regclass, 'pg_class')"
    with psycopg.connect(**PG, autocommit=True) as pg:  # type: ignore[arg-type]
        try:
            assert runner.invoke(app, ["build", "--var", "call_months=first"]).exit_code == 0
            assert runner.invoke(app, ["export"]).exit_code == 0
            table = f'"{name}".rep_sales_funnel_monthly'
            assert pg.execute(query, [table]).fetchone() == ("funnel: built with call_months=first",)
            assert runner.invoke(app, ["build"]).exit_code == 0
            assert runner.invoke(app, ["export"]).exit_code == 0
            assert pg.execute(query, [table]).fetchone() == ("funnel: built with the default definitions",)
        finally:
            pg.execute(f'drop schema if exists "{name}" cascade')
            for side in side_schemas(pg, name):
                pg.execute(f'drop schema "{side}" cascade')
