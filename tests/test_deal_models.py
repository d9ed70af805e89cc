"""The four deal models: against figures worked out by hand on a tiny export, and against a
plain-Python formulation over a generated export's CSV files."""

from __future__ import annotations

import csv
import statistics
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb
import pytest

from funnel.cli import app

from .conftest import new_project

STAGES = """stage_id,stage_name
1,Lead Generation
2,Qualified Lead
3,Needs Assessment
4,Proposal/Quote Preparation
5,Negotiation
6,Closing
7,Implementation/Onboarding
8,Follow-up/Customer Success
9,Renewal/Expansion
"""

# Eight deals, worked through by hand in the tests below (times UTC).
DEAL_CHANGES = [
    (1, "2024-01-10 10:00:00", "add_time", "2024-01-10T10:00:00"),
    (1, "2024-01-10 10:00:00", "stage_id", "1"),
    (1, "2024-02-05 09:00:00", "stage_id", "2"),
    (1, "2024-03-15 12:00:00", "stage_id", "7"),
    (2, "2024-01-20 00:00:00", "add_time", "2024-01-20T00:00:00"),
    (2, "2024-01-20 00:00:00", "stage_id", "1"),
    (2, "2024-02-29 23:59:59", "lost_reason", "1"),
    (3, "2024-01-31 23:59:59", "add_time", "2024-01-31T23:59:59"),
    (3, "2024-02-01 00:00:00", "stage_id", "1"),
    (4, "2024-02-10 08:00:00", "add_time", "2024-02-10T08:00:00"),
    (4, "2024-02-10 08:00:00", "stage_id", "3"),  # two entries at one instant: the larger id is the later
    (4, "2024-02-10 08:00:00", "stage_id", "2"),
    (4, "2024-04-02 00:00:00", "stage_id", "4"),  # the export's latest change: April is its last month end
    (5, "2024-02-15 00:00:00", "add_time", "2024-02-15T00:00:00"),
    (5, "2024-02-15 00:00:00", "stage_id", "1"),
    (7, "2024-03-01 00:00:00", "add_time", "2024-03-01T00:00:00"),
    (7, "2024-03-01 00:00:00", "stage_id", "1"),
    (7, "2024-03-20 00:00:00", "stage_id", "7"),
    (8, "2024-03-02 00:00:00", "add_time", "2024-03-02T00:00:00"),
    (8, "2024-03-02 00:00:00", "stage_id", "1"),
    (8, "2024-03-05 00:00:00", "stage_id", "7"),
    (9, "2024-03-03 00:00:00", "stage_id", "1"),  # not in deals.csv: no value, left out
]
DEALS_HEADER = (
    "deal_id,owner_id,pipeline_id,stage_id,status,value,currency,add_time,won_time,lost_time,expected_close_date,probability"
)
DEALS = [
    "1,1,1,7,won,1000.00,EUR,2024-01-10 10:00:00,2024-03-15 12:00:00,,,",
    "2,1,1,1,lost,500.55,EUR,2024-01-20 00:00:00,,2024-02-29 23:59:59,,33",
    "3,2,1,1,open,100.01,USD,2024-01-31 23:59:59,,,2024-05-01,50",
    "4,2,1,4,open,20.00,USD,2024-02-10 08:00:00,,,,",
    "5,2,1,1,open,0.05,USD,2024-02-15 00:00:00,,,,50",
    "7,1,1,7,won,333.33,EUR,2024-03-01 00:00:00,2024-03-20 00:00:00,,,",
    "8,2,1,7,won,10.00,USD,2024-03-02 00:00:00,2024-03-05 00:00:00,,,0",
]


@pytest.fixture
def hand_made(tmp_path, monkeypatch, tiny_export):
    root = new_project(tmp_path / "project", monkeypatch, tiny_export)
    raw = root / "raw_data"
    (raw / "stages.csv").write_text(STAGES)
    with (raw / "deal_changes.csv").open("w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["deal_id", "change_time", "changed_field_key", "new_value"])
        writer.writerows(DEAL_CHANGES)
    (raw / "deals.csv").write_text("\n".join([DEALS_HEADER, *DEALS]) + "\n")
    return root


def built_rows(root: Path, runner, model: str, *args: str) -> list[tuple]:
    result = runner.invoke(app, ["build", *args])
    assert result.exit_code == 0, result.output
    with duckdb.connect(str(root / "target" / "dev.duckdb"), read_only=True) as con:
        return con.execute(f"select * from public_pipedrive_analytics.{model}").fetchall()


def d(text: str) -> Decimal:
    return Decimal(text)


def test_win_rate_by_cohort_by_hand(hand_made, runner):
    rows = built_rows(hand_made, runner, "rep_win_rate_monthly")
    # January: deals 1 (won), 2 (lost), 3 (open; added 23:59:59 on the 31st). February: 4, 5
    # open, no rate. March: 7, 8 won.
    assert rows == [
        (date(2024, 1, 1), None, 3, 1, 1, 1, 0.5),
        (date(2024, 2, 1), None, 2, 0, 0, 2, None),
        (date(2024, 3, 1), None, 2, 2, 0, 0, 1.0),
    ]
    # In Berlin deal 3 was added at 00:59:59 on 1 February.
    berlin = built_rows(hand_made, runner, "rep_win_rate_monthly", "--var", "timezone=Europe/Berlin")
    assert berlin[:2] == [(date(2024, 1, 1), None, 2, 1, 1, 0, 0.5), (date(2024, 2, 1), None, 3, 0, 0, 3, None)]


def test_won_value_per_month_and_currency_by_hand(hand_made, runner):
    rows = built_rows(hand_made, runner, "rep_won_value_monthly")
    # March, EUR: 1000.00 + 333.33 = 1333.33 over 2 deals = 666.665, half away from zero:
    # 666.67 (half to even would say 666.66). USD apart: 10.00.
    assert rows == [
        (date(2024, 3, 1), None, "EUR", 2, d("1333.33"), d("666.67")),
        (date(2024, 3, 1), None, "USD", 1, d("10.00"), d("10.00")),
    ]


def test_open_pipeline_at_each_month_end_by_hand(hand_made, runner):
    rows = built_rows(hand_made, runner, "rep_open_pipeline_month_end")
    s1, s2, s3, s4 = (d(x) for x in ("1.0", "2.0", "3.0", "4.0"))
    step = {s1: "Step 1: Lead Generation", s2: "Step 2: Qualified Lead", s3: "Step 3: Needs Assessment"}
    step[s4] = "Step 4: Proposal/Quote Preparation"
    expected = [
        # 31 Jan 23:59:59.999999: deals 1 (100 %) and 2 (33 %: 165.1815 -> 165.18) in stage 1;
        # deal 3 was added but entered no stage yet.
        (date(2024, 1, 31), None, s1, step[s1], "EUR", 2, d("1500.55"), d("1165.18")),
        # 29 Feb: deal 2 was lost at 23:59:59, deal 1 moved to stage 2; deals 3 (50.005 ->
        # 50.01) and 5 (0.025 -> 0.03) in stage 1: 50.04, rounded per deal (50.03 if summed
        # first); deal 4 entered 3 and 2 at one instant: 3 is the later.
        (date(2024, 2, 29), None, s1, step[s1], "USD", 2, d("100.06"), d("50.04")),
        (date(2024, 2, 29), None, s2, step[s2], "EUR", 1, d("1000.00"), d("1000.00")),
        (date(2024, 2, 29), None, s3, step[s3], "USD", 1, d("20.00"), d("20.00")),
        # 31 Mar: deals 1, 7 and 8 won; deal 9 is not in deals.csv.
        (date(2024, 3, 31), None, s1, step[s1], "USD", 2, d("100.06"), d("50.04")),
        (date(2024, 3, 31), None, s3, step[s3], "USD", 1, d("20.00"), d("20.00")),
        (date(2024, 4, 30), None, s1, step[s1], "USD", 2, d("100.06"), d("50.04")),
        (date(2024, 4, 30), None, s4, step[s4], "USD", 1, d("20.00"), d("20.00")),
    ]
    assert rows == expected
    # In Berlin February ends at 22:59:59.999999 UTC: deal 2 (lost 23:59:59 UTC) is still open.
    berlin = built_rows(hand_made, runner, "rep_open_pipeline_month_end", "--var", "timezone=Europe/Berlin")
    assert [r for r in berlin if r[0] == date(2024, 2, 29)] == [
        (date(2024, 2, 29), None, s1, step[s1], "EUR", 1, d("500.55"), d("165.18")),
        *expected[1:4],
    ]


def test_sales_cycle_by_hand(hand_made, runner):
    rows = built_rows(hand_made, runner, "rep_sales_cycle")
    won_days = sorted([65 + 2 / 24, 19.0, 3.0])  # deals 1, 7, 8
    lost_days = 40 + 86399 / 86400  # deal 2: 20 Jan 00:00 to 29 Feb 23:59:59
    assert len(rows) == 2
    (pipeline, outcome, deals, median, p75, avg), lost = rows
    assert (pipeline, outcome, deals) == (None, "won", 3)
    assert median == pytest.approx(19.0)
    assert p75 == pytest.approx(19.0 + 0.5 * (won_days[2] - 19.0))  # continuous: halfway from 19 to 65.08
    assert avg == pytest.approx(sum(won_days) / 3)
    assert lost[:3] == (None, "lost", 1)
    assert lost[3:] == pytest.approx((lost_days, lost_days, lost_days))


# --- the same four, formulated again in plain Python over the CSV files ------------------


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _ts(text: str) -> datetime | None:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S") if text else None


def _month(ts: datetime, zone: str) -> date:
    local = ts.replace(tzinfo=UTC).astimezone(ZoneInfo(zone))
    return date(local.year, local.month, 1)


def _month_end_at(first: date, zone: str) -> datetime:
    nxt = date(first.year + first.month // 12, first.month % 12 + 1, 1)
    local = datetime(nxt.year, nxt.month, nxt.day, tzinfo=ZoneInfo(zone)) - timedelta(microseconds=1)
    return local.astimezone(UTC).replace(tzinfo=None)


def _cents(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)  # ROUND_HALF_UP is half away from zero


def python_models(raw: Path, zone: str) -> dict[str, list[tuple]]:
    """The four models' rows, from the CSV files alone."""
    deals = _read(raw / "deals.csv")
    stages = _read(raw / "stages.csv")
    names = {s["pipeline_id"]: s["pipeline_name"] for s in stages if s.get("pipeline_id")}
    stage_pipeline = {s["stage_id"]: names.get(s.get("pipeline_id", "")) for s in stages}
    stage_probability = {s["stage_id"]: s.get("deal_probability") or None for s in stages}
    steps = {r["stage_id"]: (Decimal(r["funnel_step"]), r["kpi_name"]) for r in _read(Path("sql/seeds/funnel_steps.csv"))}
    changes = _read(raw / "deal_changes.csv")

    win: dict[tuple, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    won: dict[tuple, list] = defaultdict(lambda: [0, Decimal(0)])
    cycle: dict[tuple, list[float]] = defaultdict(list)
    for deal in deals:
        pipeline = names.get(deal["pipeline_id"])
        counts = win[(_month(_ts(deal["add_time"]), zone), pipeline)]
        counts[0] += 1
        counts[("won", "lost", "open").index(deal["status"]) + 1] += 1
        if deal["status"] == "won":
            total = won[(_month(_ts(deal["won_time"]), zone), pipeline, deal["currency"])]
            total[0] += 1
            total[1] += Decimal(deal["value"])
        if deal["status"] in ("won", "lost"):
            closed = _ts(deal[f"{deal['status']}_time"])
            cycle[(pipeline, deal["status"])].append((closed - _ts(deal["add_time"])).total_seconds() / 86400)

    entries: dict[str, list[tuple[datetime, int]]] = defaultdict(list)
    for c in changes:
        if c["changed_field_key"] == "stage_id":
            entries[c["deal_id"]].append((_ts(c["change_time"]), int(c["new_value"])))
    first = min(_month(_ts(x["add_time"]), zone) for x in deals)
    last = max(_month(_ts(c["change_time"]), zone) for c in changes)
    open_rows: dict[tuple, list] = defaultdict(lambda: [0, Decimal(0), Decimal(0)])
    month = first
    while month <= last:
        end_at = _month_end_at(month, zone)
        month_end = (end_at.replace(tzinfo=UTC).astimezone(ZoneInfo(zone))).date()
        for deal in deals:
            won_at, lost_at = _ts(deal["won_time"]), _ts(deal["lost_time"])
            if _ts(deal["add_time"]) > end_at or (won_at and won_at <= end_at) or (lost_at and lost_at <= end_at):
                continue
            before = [e for e in entries.get(deal["deal_id"], []) if e[0] <= end_at]
            if not before:
                continue
            stage = str(max(before)[1])  # latest; at one instant the larger id
            step, kpi = steps.get(stage, (None, None))
            probability = deal["probability"] or stage_probability.get(stage) or "100"
            value = Decimal(deal["value"])
            row = open_rows[(month_end, stage_pipeline.get(stage), step, kpi, deal["currency"])]
            row[0] += 1
            row[1] += value
            row[2] += _cents(value * Decimal(probability) / 100)
        month = date(month.year + month.month // 12, month.month % 12 + 1, 1)

    def p(values: list[float], q: float) -> float:
        ordered, pos = sorted(values), q * (len(values) - 1)
        low = int(pos)
        return ordered[low] + (ordered[min(low + 1, len(ordered) - 1)] - ordered[low]) * (pos - low)

    return {
        "rep_win_rate_monthly": [
            (m, pl, n, w, lo, op, (w / (w + lo) if w + lo else None)) for (m, pl), (n, w, lo, op) in win.items()
        ],
        "rep_won_value_monthly": [(m, pl, cur, n, total, _cents(total / n)) for (m, pl, cur), (n, total) in won.items()],
        "rep_open_pipeline_month_end": [(*key, n, v, w) for key, (n, v, w) in open_rows.items()],
        "rep_sales_cycle": [
            (pl, outcome, len(days), statistics.median(days), p(days, 0.75), statistics.fmean(days))
            for (pl, outcome), days in cycle.items()
        ],
    }


def _key(row: tuple) -> tuple:
    return tuple((x is None, str(x)) for x in row[:5])


@pytest.mark.parametrize("zone", [pytest.param("UTC"), pytest.param("America/New_York", marks=pytest.mark.slow)])
def test_the_deal_models_equal_a_plain_python_count_over_the_csv_files(sample_project, runner, zone):
    expected = python_models(sample_project / "raw_data", zone)
    result = runner.invoke(app, ["build", "--var", f"timezone={zone}"])
    assert result.exit_code == 0, result.output
    with duckdb.connect(str(sample_project / "target" / "dev.duckdb"), read_only=True) as con:
        for model, rows in expected.items():
            got = con.execute(f"select * from public_pipedrive_analytics.{model}").fetchall()
            assert len(rows) >= 2, model
            keyed = 2 if model == "rep_sales_cycle" else 5 if model == "rep_open_pipeline_month_end" else 3
            want = sorted(rows, key=lambda r: _key(r[:keyed]))
            have = sorted(got, key=lambda r: _key(r[:keyed]))
            assert [r[:keyed] for r in have] == [r[:keyed] for r in want], model
            for a, b in zip(have, want, strict=True):
                assert a[keyed:] == pytest.approx(b[keyed:], rel=1e-12) if model == "rep_sales_cycle" else a == b, (model, a, b)
