"""Issue 21, second "Done when", end to end through the CLI: an ordinary company's account
(two pipelines of its own stage names, the standard activity types, free-text lost reasons,
an archived deal) served by the fake Pipedrive API of test_pipedrive.py is pulled, the build
stops at the shipped steps, `funnel steps --write --calls call,meeting` writes the account's,
and the build then reports each pipeline apart with the account's names, as counted in plain
Python (test_pipelines.expected_funnel) over the pulled CSVs."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import duckdb
import pytest

from funnel.cli import app
from tests import test_pipedrive as api
from tests.test_pipedrive import FILES, FakePipedrive, read_csv
from tests.test_pipelines import STAGES, expected_funnel, write_account

fake, sleeps = api.fake, api.sleeps  # the fake API of test_pipedrive.py, serving `subset` below; retries do not sleep
SCHEMA = "public_pipedrive_analytics"
FREE_TEXT = ["Went with a competitor", "Budget frozen"]  # no option of the lost_reason field has these labels


@pytest.fixture
def subset(tmp_path: Path) -> dict[str, list[list[str]]]:
    """The account's tables, in the layouts the fake reads (test_pipelines.write_account)."""
    write_account(tmp_path / "account")
    return {name: read_csv(tmp_path / "account" / name) for name in FILES}


def stage_entries(account: FakePipedrive, deal: int) -> set[str]:
    return {i["data"]["new_value"] for i in account.flows[deal] if i["data"].get("field_key") == "stage_id"}


def lost_reason_items(account: FakePipedrive, deal: int) -> list[dict]:
    return [i["data"] for i in account.flows[deal] if i["data"].get("field_key") == "lost_reason"]


def rows(project: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(project / "target" / "dev.duckdb"), read_only=True) as con:
        return con.execute(sql).fetchall()


def without_deal(folder: Path, deal: str, into: Path) -> Path:
    """A copy of the export's deal_changes.csv, activity.csv and stages.csv without one deal."""
    into.mkdir()
    for name in ("deal_changes.csv", "activity.csv", "stages.csv", "activity_types.csv"):
        table = read_csv(folder / name)
        at = table[0].index("deal_id") if "deal_id" in table[0] else None
        with (into / name).open("w", newline="", encoding="utf-8") as f:
            csv.writer(f, lineterminator="\n").writerows([r for r in table if at is None or r[at] != deal])
    return into


def test_an_account_of_its_own_pulled_built_stopped_at_the_steps_then_reported_per_pipeline(
    project, runner, fake, sleeps, tmp_path
):
    # The account as Pipedrive serves it: two pipelines with their own stages, standard types.
    fake.pipelines = [
        {"id": 1, "name": "New Business", "order_nr": 1, "is_deleted": False},
        {"id": 2, "name": "Renewals", "order_nr": 2, "is_deleted": False},
    ]
    fake.stages = [
        {"id": sid, "name": name, "pipeline_id": pid, "order_nr": order, "deal_probability": probability}
        for sid, name, pid, _, order, probability in STAGES
    ]
    assert {t["key_string"] for t in fake.activity_types} == {"call", "meeting", "task", "email"}
    new_business = {str(s[0]) for s in STAGES if s[2] == 1}
    renewals = {str(s[0]) for s in STAGES if s[2] == 2}
    # Two lost deals of New Business (the pipeline rep_lost_reasons_monthly counts by default)
    # give reasons as free text; one deal of Renewals is archived (GET /api/v2/deals/archived).
    lost = [d for d in sorted(fake.flows) if lost_reason_items(fake, d) and stage_entries(fake, d) & new_business]
    free_text = dict(zip(lost[:2], FREE_TEXT, strict=True))
    for deal, text in free_text.items():
        for item in lost_reason_items(fake, deal):
            item["new_value"] = text
    archived = next(d for d in sorted(fake.flows) if d not in free_text and stage_entries(fake, d) & renewals)
    item = next(d for d in fake.deals if d["id"] == archived)
    fake.deals.remove(item)
    fake.archived.append({**item, "is_archived": True})

    pulled = runner.invoke(app, ["pull"])
    assert pulled.exit_code == 0, pulled.output
    assert fake.requests_to("/api/v2/deals/archived")
    raw = project / "raw_data"

    # The shipped steps are another company's: the build stops and names the failing test.
    stopped = runner.invoke(app, ["build"])
    assert stopped.exit_code == 1, stopped.output
    assert "funnel_steps_match_the_export" in stopped.stderr.strip().splitlines()[-1]
    assert "funnel steps --write" in stopped.stderr

    written = runner.invoke(app, ["steps", "--write", "--calls", "call,meeting"])
    assert written.exit_code == 0, written.output
    built = runner.invoke(app, ["build"])
    assert built.exit_code == 0, built.output
    warned = [line.split() for line in built.stderr.splitlines() if "lost_reasons_given_as_text" in line]
    assert warned == [["WARN", "test", "lost_reasons_given_as_text:", str(len(free_text)), "rows"]]  # a deal a row
    assert built.stderr.strip().splitlines()[-1].endswith("ERROR=0")

    # Every pipeline apart, with the account's own names, as counted in plain Python over the
    # pulled CSVs and over the account's own CSVs (the pull lost nothing the funnel counts).
    report = rows(project, f"select * from {SCHEMA}.rep_pipeline_funnel_monthly")
    found = {(p, m.isoformat(), kpi, f"{step:.1f}", n) for p, m, kpi, step, n in report}
    assert found == expected_funnel(raw, ["call", "meeting"])
    assert found == expected_funnel(tmp_path / "account", ["call", "meeting"])
    assert {p for p, *_ in found} == {"New Business", "Renewals"}

    def names(pipeline: str) -> set[str]:
        return {kpi for p, _, kpi, _, _ in found if p == pipeline}

    assert names("New Business") == {
        "Step 1: Qualified", "Step 2: Contact Made", "Step 2.1: Call", "Step 3: Demo Scheduled", "Step 3.1: Meeting",
        "Step 4: Proposal Made", "Step 5: Negotiations Started",
    }  # fmt: skip
    assert names("Renewals") == {
        "Step 1: Up for Renewal", "Step 2: Renewal Call Booked", "Step 2.1: Call", "Step 3: Renewed", "Step 3.1: Meeting",
    }  # fmt: skip

    # The archived deal's history was pulled and is counted: without it the count differs.
    assert str(archived) in {r[0] for r in read_csv(raw / "deal_changes.csv")[1:]}
    assert found != expected_funnel(without_deal(raw, str(archived), tmp_path / "no_archived"), ["call", "meeting"])

    # Free-text reasons are reported as text with lost_reason_id NULL, month of the latest reason.
    expected_text: dict[tuple[str, str], int] = defaultdict(int)
    latest: dict[str, tuple[str, str]] = {}
    for deal, at, key, value in read_csv(raw / "deal_changes.csv")[1:]:
        if key == "lost_reason" and int(deal) in free_text:
            latest[deal] = max(latest.get(deal, (at, value)), (at, value))
    for at, value in latest.values():
        expected_text[(at[:7] + "-01", value)] += 1
    assert set(latest) == {str(d) for d in free_text}
    text_rows = rows(
        project,
        f"select month, lost_reason, sum(deals_count) from {SCHEMA}.rep_lost_reasons_monthly "
        "where lost_reason_id is null group by all",
    )
    assert {(m.isoformat(), r, n) for m, r, n in text_rows} == {(m, r, n) for (m, r), n in expected_text.items()}
    assert {r for _, r, _ in text_rows} == set(FREE_TEXT)
