"""The generator: deterministic, shaped like the real export, quirks included."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from funnel.pipedrive.sample import generate
from funnel.project.sources import SOURCES

REPO = Path(__file__).resolve().parent.parent


def test_the_committed_sample_is_exactly_what_the_defaults_write(tmp_path):
    generate(tmp_path)  # the defaults of `funnel generate`
    for source in SOURCES:
        committed = (REPO / "raw_data" / source.file_name).read_bytes()
        assert (tmp_path / source.file_name).read_bytes() == committed, (
            f"raw_data/{source.file_name} differs from what `funnel generate` writes; regenerate it"
        )


def test_same_seed_same_bytes_other_seed_other_data(tmp_path):
    generate(tmp_path / "a", deals=300, seed=5)
    generate(tmp_path / "b", deals=300, seed=5)
    generate(tmp_path / "c", deals=300, seed=6)
    for source in SOURCES:
        a = (tmp_path / "a" / source.file_name).read_bytes()
        assert a == (tmp_path / "b" / source.file_name).read_bytes()
    assert (tmp_path / "a" / "deal_changes.csv").read_bytes() != (tmp_path / "c" / "deal_changes.csv").read_bytes()


@pytest.fixture(scope="module")
def shape(tmp_path_factory):
    out = tmp_path_factory.mktemp("shape")
    counts = generate(out, deals=20_000, seed=11)
    con = duckdb.connect()
    con.execute(f"create table dc as select * from read_csv('{out}/deal_changes.csv')")
    con.execute(f"create table a as select * from read_csv('{out}/activity.csv')")
    return counts, con


def one(con, sql):
    return con.execute(sql).fetchone()[0]


@pytest.mark.slow
def test_rows_per_deal_follow_the_real_export(shape):
    counts, con = shape
    # Real export: 15,406 deal_changes rows and 4,579 activities for 2,000 deals.
    assert 7.0 < counts["deal_changes"] / 20_000 < 8.4
    assert 2.2 < counts["activity"] / 20_000 < 2.4
    assert counts["users"] == round(20_000 * 0.8935)


@pytest.mark.slow
def test_every_deal_starts_at_stage_1_and_only_some_are_lost(shape):
    _, con = shape
    first_stages = con.execute(
        "select distinct first(new_value order by change_time) from dc where changed_field_key = 'stage_id' group by deal_id"
    ).fetchall()
    assert first_stages == [("1",)]
    lost = one(con, "select count(distinct deal_id) from dc where changed_field_key = 'lost_reason'")
    assert 0.45 * 20_000 < lost < 0.7 * 20_000  # won deals (onboarding and later) and open ones are not lost
    won_and_lost = one(
        con,
        "select count(distinct deal_id) from dc where changed_field_key = 'lost_reason' and deal_id in "
        "(select deal_id from dc where changed_field_key = 'stage_id' and new_value = '7')",
    )
    assert won_and_lost < 0.01 * lost  # only second lifecycles


@pytest.mark.slow
def test_lost_reasons_and_time_in_stage_depend_on_the_stage(shape):
    _, con = shape
    # The reason most often given at stage 1 (duplicates, unreachable) differs from stage 5's (pricing).
    top_reason = dict(
        con.execute(
            """
            with last_stage as (
                select deal_id, max(new_value::int) as stage from dc where changed_field_key = 'stage_id' group by 1
            )
            select stage, mode(new_value) from dc join last_stage using (deal_id)
            where changed_field_key = 'lost_reason' and stage in (1, 5) group by 1
            """
        ).fetchall()
    )
    assert top_reason[1] in ("3", "5") and top_reason[5] == "2"
    # Days from a stage entry to the next change: later stages take longer, and the spread is skewed.
    days = dict(
        con.execute(
            """
            with gaps as (
                select
                    try_cast(new_value as int) as stage,
                    epoch(lead(change_time) over (partition by deal_id order by change_time) - change_time) / 86400 as days,
                    changed_field_key
                from dc
            )
            select stage, avg(days) from gaps where changed_field_key = 'stage_id' and stage in (1, 5) group by 1
            """
        ).fetchall()
    )
    assert days[5] > 2 * days[1]


@pytest.mark.slow
def test_owners_are_a_pool_of_reps_that_change_mid_funnel(shape):
    _, con = shape
    owners = one(con, "select count(distinct new_value) from dc where changed_field_key = 'user_id'")
    assert 50 < owners < 1_000  # a sales team, not one owner per deal
    changed_after_stage_1 = one(
        con,
        """
        select count(distinct o.deal_id) from dc as o join dc as s on o.deal_id = s.deal_id
        where o.changed_field_key = 'user_id' and s.changed_field_key = 'stage_id' and s.new_value = '1'
            and o.change_time > s.change_time
        """,
    )
    assert changed_after_stage_1 > 0.2 * 20_000
    no_owner = one(
        con, "select count(*) from (select deal_id from dc group by 1 having count(*) filter (changed_field_key = 'user_id') = 0)"
    )
    assert 0 < no_owner < 0.02 * 20_000


@pytest.mark.slow
def test_stages_are_skipped_and_few_deals_reach_the_end(shape):
    _, con = shape
    per_stage = dict(
        con.execute("select new_value::int, count(*) from dc where changed_field_key = 'stage_id' group by 1").fetchall()
    )
    assert per_stage[1] >= 20_000
    assert all(per_stage[s] > per_stage[s + 1] for s in range(1, 8))  # fewer deals at each later stage
    assert per_stage[2] < 0.8 * per_stage[1]  # skips and stops


@pytest.mark.slow
def test_the_real_quirks_appear_at_similar_rates(shape):
    _, con = shape
    two_lifecycles = one(
        con, "select count(*) from (select deal_id from dc where changed_field_key = 'add_time' group by 1 having count(*) > 1)"
    )
    assert 20 <= two_lifecycles <= 90  # real: 5 in 2,000 (0.25 %)
    reentries = one(
        con,
        "select count(*) from (select deal_id, new_value from dc where changed_field_key = 'stage_id' "
        "group by all having count(*) > 1)",
    )
    assert reentries > 0
    duplicate_ids = one(con, "select count(*) from (select activity_id from a group by 1 having count(*) > 1)")
    assert 0.001 < duplicate_ids / one(con, "select count(*) from a") < 0.004  # real: 11 in 4,579
    known = one(con, "select count(*) from a where deal_id in (select deal_id from dc)")
    assert 0 < known / one(con, "select count(*) from a") < 0.005  # real: 8 in 4,579
    done = one(con, "select avg(done::int) from a")
    assert 0.45 < done < 0.55


def test_generated_export_builds_cleanly(sample_project):
    from funnel.build.runner import build

    from .conftest import compiled

    result = build(compiled(sample_project))
    assert result.count("ERROR") == 0
    assert {r.test.name for r in result.tests if r.status == "WARN"} == {
        "unique_stg_activity_activity_id",
        "activities_with_unknown_deal",
        "deals_with_several_add_time",
    }
