"""deals.csv: an optional source read strictly, and the generator's deals that agree with
its deal_changes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pytest

from funnel.cli import app
from funnel.pipedrive.sample import generate

from .conftest import SHARED_RAW, needs_shared_raw, new_project, read_report, reference_rows, sampled

DEAL_MODELS = ("rep_win_rate_monthly", "rep_won_value_monthly", "rep_open_pipeline_month_end", "rep_sales_cycle")
HEADER = "deal_id,owner_id,pipeline_id,stage_id,status,value,currency,add_time,won_time,lost_time,expected_close_date,probability"
GOOD = "100001,1,1,2,open,1200.50,EUR,2024-01-05 10:00:00,,,2024-03-01,40"


def error_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("Error: "), result.stderr
    assert sum(line.startswith("Error:") for line in lines) == 1
    return lines[-1]


def rows(database: Path, model: str) -> int:
    with duckdb.connect(str(database), read_only=True) as con:
        return con.execute(f"select count(*) from public_pipedrive_analytics.{model}").fetchone()[0]


@needs_shared_raw
def test_the_original_export_has_no_deals_csv_and_still_gives_its_report(tmp_path, monkeypatch, runner):
    root = new_project(tmp_path / "project", monkeypatch, SHARED_RAW)
    assert not (root / "raw_data" / "deals.csv").exists()
    result = runner.invoke(app, ["build"])
    assert result.exit_code == 0, result.output
    assert "note  source deals" in result.stderr and "deals.csv is not in the export (optional): an empty table" in result.stderr
    database = root / "target" / "dev.duckdb"
    assert [(str(m), k, str(s), c) for m, k, s, c in read_report(database)] == reference_rows()
    assert len(reference_rows()) == 128
    for model in DEAL_MODELS:
        assert rows(database, model) == 0, model
    status = runner.invoke(app, ["status", "--format", "json"])
    deals = [s for s in json.loads(status.stdout)["build"]["sources"] if s["table"] == "deals"]
    assert deals and deals[0]["absent"] is True and deals[0]["rows"] == 0
    text = runner.invoke(app, ["status"]).stdout
    assert "deals.csv" in text and "absent  optional: an empty table" in text


def test_deals_csv_appearing_or_going_is_a_change_of_the_export(project, runner):
    deals = project / "raw_data" / "deals.csv"
    saved = deals.read_bytes()
    deals.unlink()
    assert runner.invoke(app, ["build"]).exit_code == 0
    assert rows(project / "target" / "dev.duckdb", "rep_win_rate_monthly") == 0
    deals.write_bytes(saved)
    plan = runner.invoke(app, ["build", "--dry-run"])
    assert "load  source deals" in plan.stderr and "deals.csv appeared" in plan.stderr
    assert runner.invoke(app, ["build"]).exit_code == 0
    assert rows(project / "target" / "dev.duckdb", "rep_win_rate_monthly") > 0
    deals.unlink()
    plan = runner.invoke(app, ["build", "--dry-run"])
    assert "deals.csv is gone (optional: an empty table)" in plan.stderr


def test_a_broken_link_is_not_an_absent_file(project, runner):
    deals = project / "raw_data" / "deals.csv"
    deals.unlink()
    deals.symlink_to(project / "nowhere.csv")
    result = runner.invoke(app, ["build"])
    assert result.exit_code == 1
    assert "deals.csv: file not found" in error_line(result)


@pytest.mark.parametrize(
    ("row", "words"),
    sampled(
        [
            (GOOD.replace(",open,", ",Won,"), "column status: 'Won' is not one of open, won, lost"),
            (GOOD.replace(",open,", ",,"), None),  # empty: NULL, which not_null stops (below)
            (GOOD.replace(",EUR,", ",usd,"), "column currency: 'usd' does not match the declared pattern [A-Z]{3}"),
            (GOOD.replace(",EUR,", ",EURO,"), "column currency: 'EURO' does not match"),
            (GOOD.replace(",EUR,", ",€,"), "column currency: '€' does not match"),
            (GOOD.replace(",1200.50,", ',"1,200.50",'), "column value: '1,200.50' is not a decimal number"),
            (GOOD.replace(",1200.50,", ",1200.505,"), "column value: '1200.505' is not a decimal number"),
            (GOOD.replace(",1200.50,", ",1.2e3,"), "column value: '1.2e3' is not a decimal number"),
            (GOOD.replace(",1200.50,", ",NaN,"), "column value: 'NaN' is not a decimal number"),
            (GOOD.replace(",40", ",40.5"), "column probability: '40.5' is not a whole number"),
            (GOOD.replace("2024-03-01", "2024-3-1"), "column expected_close_date: '2024-3-1' is not a date"),
            (
                GOOD.replace("2024-01-05 10:00:00", "2024-01-05T10:00:00"),
                "column add_time: '2024-01-05T10:00:00' is not a timestamp",
            ),
        ],
        {"currency-lower", "value-comma"},
        [
            "status-word",
            "status-empty",
            "currency-lower",
            "currency-long",
            "currency-symbol",
            "value-comma",
            "value-3-decimals",
            "value-exponent",
            "value-nan",
            "probability-decimal",
            "date-unpadded",
            "time-iso",
        ],
    ),
)
def test_deals_csv_values_have_one_spelling(project, runner, row, words):
    (project / "raw_data" / "deals.csv").write_text(f"{HEADER}\n{GOOD.replace('100001', '100002')}\n{row}\n")
    result = runner.invoke(app, ["build"])
    assert result.exit_code == 1
    line = error_line(result)
    if words is None:
        assert "not_null_stg_deals" in line
    else:
        assert "deals.csv line 3, " + words in line, line
    assert not (project / "target" / "dev.duckdb").exists()  # nothing was published


@pytest.mark.parametrize(
    ("row", "test"),
    sampled(
        [
            (GOOD.replace(",40", ",150"), "deal_probability_is_a_percentage"),
            (GOOD.replace(",40", ",-5"), "deal_probability_is_a_percentage"),
            (GOOD.replace(",open,", ",won,"), "deal_close_time_matches_status"),  # won without won_time
            (GOOD.replace(",open,", ",lost,"), "deal_close_time_matches_status"),
            (GOOD.replace(",open,", ",won,").replace(",,,", ",2024-01-04 09:00:00,,"), "deal_closed_after_added"),
            (GOOD.replace(",open,", ",lost,").replace(",,,", ",,2024-01-05 09:59:59,"), "deal_closed_after_added"),
            (f"{GOOD}\n{GOOD}", "unique_stg_deals_deal_id"),
        ],
        {"probability-150", "won-before-added"},
        [
            "probability-150",
            "probability-negative",
            "won-without-time",
            "lost-without-time",
            "won-before-added",
            "lost-before-added",
            "deal-twice",
        ],
    ),
)
def test_deals_that_contradict_themselves_stop_the_build(project, runner, row, test):
    (project / "raw_data" / "deals.csv").write_text(f"{HEADER}\n{row}\n")
    result = runner.invoke(app, ["build"])
    assert result.exit_code == 1
    assert test in error_line(result)


def test_a_deal_won_and_lost_is_counted_and_warned(project, runner):
    won_and_lost = GOOD.replace(",open,", ",won,").replace(",,,", ",2024-02-01 00:00:00,2024-01-20 00:00:00,")
    (project / "raw_data" / "deals.csv").write_text(f"{HEADER}\n{won_and_lost}\n")
    result = runner.invoke(app, ["build"])
    assert result.exit_code == 0, result.output
    assert "WARN  test   deal_closed_twice_or_reopened: 1 row" in result.stderr
    with duckdb.connect(str(project / "target" / "dev.duckdb"), read_only=True) as con:
        assert con.execute("select won, lost from public_pipedrive_analytics.rep_win_rate_monthly").fetchall() == [(1, 0)]


def test_generated_deals_agree_with_their_deal_changes(tmp_path):
    generate(tmp_path, deals=3000, seed=7)
    con = duckdb.connect()
    con.execute(f"create view dc as select * from read_csv('{tmp_path}/deal_changes.csv', auto_detect = true)")
    con.execute(f"create view d as select * from read_csv('{tmp_path}/deals.csv', auto_detect = true)")
    one = lambda sql: con.execute(sql).fetchone()[0]  # noqa: E731
    assert one("select count(*) from d") == one("select count(distinct deal_id) from dc") == 3000
    # stage and owner: the latest entry (ties: the larger id)
    assert (
        one("""
        select count(*) from d join (
            select deal_id, arg_max(new_value::bigint, (change_time, new_value::bigint)) as stage
            from dc where changed_field_key = 'stage_id' group by deal_id
        ) s using (deal_id) where s.stage <> d.stage_id""")
        == 0
    )
    assert (
        one("""
        select count(*) from d join (
            select deal_id, arg_max(new_value::bigint, (change_time, new_value::bigint)) as owner
            from dc where changed_field_key = 'user_id' group by deal_id
        ) s using (deal_id) where s.owner is distinct from d.owner_id""")
        == 0
    )
    assert (
        one("""
        select count(*) from d join (
            select deal_id, min(new_value::timestamp) as added from dc where changed_field_key = 'add_time' group by deal_id
        ) a using (deal_id) where a.added <> d.add_time""")
        == 0
    )
    # won deals reach a late stage, when they got there; lost ones have a lost reason then
    assert one("select count(*) from d where status = 'won' and (stage_id < 7 or won_time is null or lost_time is not null)") == 0
    assert (
        one("""
        select count(*) from d where status = 'won' and not exists (
            select 1 from dc where dc.deal_id = d.deal_id and changed_field_key = 'stage_id'
                and new_value::bigint >= 7 and change_time = d.won_time)""")
        == 0
    )
    assert (
        one("""
        select count(*) from d where status = 'lost' and not exists (
            select 1 from dc where dc.deal_id = d.deal_id and changed_field_key = 'lost_reason' and change_time = d.lost_time)""")
        == 0
    )
    assert one("select count(*) from d where status = 'open' and (won_time is not null or lost_time is not null)") == 0
    statuses = dict(con.execute("select status, count(*) from d group by status").fetchall())
    assert set(statuses) == {"open", "won", "lost"} and min(statuses.values()) > 100
    # values vary by owner, in a few currencies, each owner in one
    assert one("select count(distinct currency) from d") >= 3
    assert one("select max(n) from (select count(distinct currency) as n from d group by owner_id)") == 1
    by_owner = con.execute(
        "select median(value) from d where value > 0 group by owner_id having count(*) >= 30 order by 1"
    ).fetchall()
    assert by_owner[-1][0] > 1.5 * by_owner[0][0]
    assert 0.1 < one("select avg((probability is not null)::int) from d") < 0.2


def test_a_generated_export_builds_the_deal_models_without_errors(sample_built):
    database = sample_built / "target" / "dev.duckdb"
    for model in DEAL_MODELS:
        assert rows(database, model) > 0, model


def test_deals_csv_may_be_left_out_of_a_copied_export(tmp_path, monkeypatch, runner, tiny_export):
    export = tmp_path / "export"
    shutil.copytree(tiny_export, export)
    (export / "deals.csv").unlink()
    root = new_project(tmp_path / "project", monkeypatch, export)
    result = runner.invoke(app, ["build"])
    assert result.exit_code == 0, result.output
    assert rows(root / "target" / "dev.duckdb", "rep_sales_funnel_monthly") > 0
