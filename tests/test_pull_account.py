"""`funnel pull` from an ordinary company's account (issue 21): lost reasons given as labels,
archived and deleted deals, pipelines in stages.csv, and deals.csv (issue 23), against the
fake Pipedrive API of test_pipedrive.py."""

from __future__ import annotations

import contextlib
import functools
import json
import re
import threading
import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from funnel.cli import app
from funnel.pipedrive import pull as pipedrive
from funnel.pipedrive.client import RetryPolicy
from funnel.pipedrive.rows import STAGE_COLUMNS, lost_reason_ids, with_lost_reason_ids
from funnel.project.sources import SOURCES_BY_TABLE
from tests.conftest import REPO, SHARED_RAW, needs_shared_raw, new_project, read_report, reference_rows, work_in
from tests.test_pipedrive import (
    FILES,
    TOKEN,
    FakePipedrive,
    QuietServer,
    export_bytes,
    handler_for,
    pull_cli,
    read_csv,
    sample_subset,
)

DEALS_HEADER = list(SOURCES_BY_TABLE["deals"].columns)


@contextlib.contextmanager
def served(fake: FakePipedrive, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakePipedrive]:
    server = QuietServer(("127.0.0.1", 0), handler_for(fake))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("PIPEDRIVE_API_URL", fake.url)
    monkeypatch.setenv("PIPEDRIVE_API_TOKEN", TOKEN)
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(autouse=True)
def no_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pipedrive, "RetryPolicy", functools.partial(RetryPolicy, timeout=2, sleep=lambda s: None))


@pytest.fixture
def account(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakePipedrive]:
    with served(FakePipedrive(sample_subset()), monkeypatch) as fake:
        yield fake


def rows_of(path: Path) -> list[list[str]]:
    return read_csv(path)[1:]


def lost_deals(fake: FakePipedrive) -> list[int]:
    return sorted(d for d, items in fake.flows.items() if any(i["data"].get("field_key") == "lost_reason" for i in items))


def set_reason(fake: FakePipedrive, deal: int, text: str) -> None:
    for item in fake.flows[deal]:
        if item["data"].get("field_key") == "lost_reason":
            item["data"]["new_value"] = text


def query(database: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(database), read_only=True) as con:
        return con.execute(sql).fetchall()


# --- lost reasons ------------------------------------------------------------------------


@needs_shared_raw
def test_the_original_export_served_with_lost_reasons_as_labels_pulls_and_builds_to_the_reference_report(
    tmp_path, monkeypatch, runner
):
    new_project(tmp_path / "project", monkeypatch)
    original = {name: read_csv(SHARED_RAW / name) for name in FILES}
    fake = FakePipedrive(original, page_size=500)
    labels = {o["label"] for key, o in fake.options() if key == "lost_reason"}
    served_reasons = {
        i["data"]["new_value"] for items in fake.flows.values() for i in items if i["data"].get("field_key") == "lost_reason"
    }
    assert served_reasons and served_reasons <= labels  # the API's way: labels, not ids

    with served(fake, monkeypatch):
        result = pull_cli(runner, "--out", "pulled")
    assert result.exit_code == 0, result.output

    pulled = tmp_path / "project" / "pulled"
    assert sorted(rows_of(pulled / "deal_changes.csv")) == sorted(original["deal_changes.csv"][1:])  # ids again
    stages = read_csv(pulled / "stages.csv")
    assert [row[:2] for row in stages] == original["stages.csv"]  # stage_id, stage_name first
    built = runner.invoke(app, ["build", "--raw-data", "pulled"])
    assert built.exit_code == 0, built.output
    report = read_report(tmp_path / "project" / "target" / "dev.duckdb")
    assert [(str(m), k, str(s), c) for m, k, s, c in report] == reference_rows()


def test_a_free_text_reason_and_a_deleted_option_are_kept_as_text_and_reported_by_it(project, runner, account):
    first, second, *others = lost_deals(account)
    set_reason(account, first, "Went with a competitor")
    set_reason(account, second, "Budget frozen")  # an option deleted since: the API still gives its label
    assert pull_cli(runner, "--out", "pulled").exit_code == 0

    reasons = {int(d): v for d, _, key, v in rows_of(project / "pulled" / "deal_changes.csv") if key == "lost_reason"}
    assert reasons[first] == "Went with a competitor" and reasons[second] == "Budget frozen"
    ids = {o["label"]: o["id"] for key, o in account.options() if key == "lost_reason"}
    for deal in others:  # a label of an option is written as the option's id, the export's layout
        served = {i["data"]["new_value"] for i in account.flows[deal] if i["data"].get("field_key") == "lost_reason"}
        assert {reasons[deal]} == {ids[label] for label in served}

    built = runner.invoke(app, ["build", "--raw-data", "pulled"])
    assert built.exit_code == 0, built.output
    assert "lost_reasons_given_as_text" in built.stderr
    text_rows = query(
        project / "target" / "dev.duckdb",
        "select lost_reason, sum(deals_count) from public_pipedrive_analytics.rep_lost_reasons_monthly "
        "where lost_reason_id is null group by lost_reason order by lost_reason",
    )
    assert text_rows == [("Budget frozen", 1), ("Went with a competitor", 1)]


def test_a_label_two_options_share_names_neither():
    fields = [
        (
            "23",
            "lost_reason",
            "Lost reason",
            json.dumps([{"id": "1", "label": "Price"}, {"id": "2", "label": "Price"}, {"id": "3", "label": "Timing"}]),
        )
    ]
    ids = lost_reason_ids(fields)
    assert ids == {"Timing": "3"}
    rows = [("5", "2024-01-01 00:00:00", "lost_reason", "Price"), ("6", "2024-01-01 00:00:00", "lost_reason", "Timing")]
    assert with_lost_reason_ids(rows, ids) == [rows[0], ("6", "2024-01-01 00:00:00", "lost_reason", "3")]


# --- archived and deleted deals ---------------------------------------------------------


def test_archived_deals_are_listed_from_their_own_endpoint_and_pulled_like_any_other(project, runner, account):
    assert pull_cli(runner, "--out", "all_active").exit_code == 0
    archived = account.deals[3]
    account.deals.remove(archived)
    account.archived.append({**archived, "is_archived": True})

    assert pull_cli(runner, "--out", "with_archived").exit_code == 0
    assert account.requests_to("/api/v2/deals/archived")
    folder = project / "with_archived"
    assert str(archived["id"]) in {row[0] for row in rows_of(folder / "deal_changes.csv")}
    assert str(archived["id"]) in {row[0] for row in rows_of(folder / "deals.csv")}
    for name in ("deal_changes.csv", "deals.csv"):
        assert (folder / name).read_bytes() == (project / "all_active" / name).read_bytes(), name


def test_deals_deleted_since_the_last_pull_are_dropped_by_every_pull_and_the_summary_says_so(project, runner, account):
    assert pull_cli(runner).exit_code == 0
    gone = account.deals.pop(2)["id"]
    del account.flows[gone]

    result = pull_cli(runner, "--since", "last")
    assert result.exit_code == 0, result.output
    assert "Dropped 1 deal(s) of the previous export that no longer exist in Pipedrive (deleted)" in result.stderr
    raw = project / "raw_data"
    assert str(gone) not in {row[0] for row in rows_of(raw / "deal_changes.csv")}
    assert str(gone) not in {row[0] for row in rows_of(raw / "deals.csv")}
    assert pull_cli(runner, "--out", "fresh").exit_code == 0
    for name in ("deal_changes.csv", "deals.csv"):
        assert (raw / name).read_bytes() == (project / "fresh" / name).read_bytes(), name

    archived_gone = account.deals.pop(0)
    account.archived.append({**account.deals.pop(0), "is_archived": True})  # archived: still there
    del account.flows[archived_gone["id"]]
    result = pull_cli(runner)  # a whole pull too
    assert result.exit_code == 0, result.output
    assert "Dropped 1 deal(s)" in result.stderr
    again = pull_cli(runner)
    assert again.exit_code == 0 and "Dropped" not in again.stderr


@pytest.mark.parametrize("lists_deleted", [False, True], ids=["deleted-not-listed", "deleted-listed-marked"])
def test_activities_deleted_since_the_last_pull_are_dropped_and_a_since_pull_equals_a_full_pull(
    project, runner, account, lists_deleted
):
    """A deleted call must not count in the funnel's call steps after `--since last`."""
    assert pull_cli(runner).exit_code == 0
    raw = project / "raw_data"
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    gone, changed = account.activities[3], account.activities[7]
    assert str(gone["id"]) in {row[0] for row in rows_of(raw / "activity.csv")}
    account.lists_deleted = lists_deleted  # whether the list would give the deleted one, marked
    account.delete_activity(gone["id"], at=now)
    changed.update(done=not changed["done"], update_time=now)

    result = pull_cli(runner, "--since", "last")
    assert result.exit_code == 0, result.output
    assert (
        "Dropped 1 activity of the previous export that no longer exist in Pipedrive (deleted): "
        "their rows are gone from activity.csv." in result.stderr
    )
    activities = {row[0]: row for row in rows_of(raw / "activity.csv")}
    assert str(gone["id"]) not in activities
    assert activities[str(changed["id"])][4] == str(changed["done"])
    assert pull_cli(runner, "--out", "fresh").exit_code == 0
    assert (raw / "activity.csv").read_bytes() == (project / "fresh" / "activity.csv").read_bytes()
    assert export_bytes(raw) == export_bytes(project / "fresh")

    again = pull_cli(runner, "--since", "last")
    assert again.exit_code == 0 and "Dropped" not in again.stderr


# --- stages.csv with pipelines -----------------------------------------------------------


def test_stages_carry_their_pipeline_its_name_the_order_and_the_probability(project, runner, account):
    account.pipelines.append({"id": 2, "name": "Renewals", "order_nr": 2, "is_deleted": False})
    account.stages[1].update(pipeline_id=2, order_nr=1, deal_probability=40)
    account.stages[2].update(deal_probability=None)
    assert pull_cli(runner).exit_code == 0

    assert STAGE_COLUMNS == ("stage_id", "stage_name", "pipeline_id", "pipeline_name", "order_nr", "deal_probability")
    names = {1: "Sales", 2: "Renewals"}
    expected = [
        [
            str(s["id"]),
            s["name"],
            str(s["pipeline_id"]),
            names[s["pipeline_id"]],
            str(s["order_nr"]),
            str(s["deal_probability"] or ""),
        ]
        for s in sorted(account.stages, key=lambda s: s["id"])
    ]
    stages = read_csv(project / "raw_data" / "stages.csv")
    declared = list(SOURCES_BY_TABLE["stages"].columns)  # the columns sql/sources.toml declares, of these six
    assert stages[0] == declared
    at = [STAGE_COLUMNS.index(c) for c in declared]
    assert stages[1:] == [[row[i] for i in at] for row in expected]
    assert account.requests_to("/api/v2/pipelines") and not account.requests_to("/api/v1/stages")


# --- deals.csv ---------------------------------------------------------------------------


def test_deals_csv_is_each_deals_current_state_archived_included(project, runner, account):
    won, lost, archived = account.deals[0], account.deals[1], account.deals[2]
    won.update(
        status="won",
        value=1234.5,
        currency="USD",
        won_time="2024-03-01T10:00:00Z",
        probability=80.0,
        expected_close_date="2024-03-15",
        owner_id=7,
        pipeline_id=2,
        stage_id=5,
        add_time="2024-01-31T23:30:00+02:00",
    )
    lost.update(status="lost", value=0, lost_time="2024-02-02T08:00:00Z", lost_reason="Pricing Issues")
    account.deals.remove(archived)
    account.archived.append({**archived, "is_archived": True, "value": 0, "owner_id": None})
    assert pull_cli(runner).exit_code == 0

    deals = read_csv(project / "raw_data" / "deals.csv")
    assert deals[0] == DEALS_HEADER
    by_id = {int(row[0]): row for row in deals[1:]}
    assert sorted(by_id) == sorted(d["id"] for d in account.deals + account.archived)
    assert by_id[won["id"]] == [
        str(won["id"]),
        "7",
        "2",
        "5",
        "won",
        "1234.5",
        "USD",
        "2024-01-31 21:30:00",
        "2024-03-01 10:00:00",
        "",
        "2024-03-15",
        "80",
    ]
    assert by_id[lost["id"]][4:10] == ["lost", "0", "EUR", "2024-01-02 03:04:05", "", "2024-02-02 08:00:00"]
    assert by_id[archived["id"]][:6] == [str(archived["id"]), "", "1", "1", "open", "0"]
    built = runner.invoke(app, ["build"])
    assert built.exit_code == 0, built.output
    won_rows = query(
        project / "target" / "dev.duckdb", "select sum(won_deals) from public_pipedrive_analytics.rep_won_value_monthly"
    )
    assert won_rows == [(1,)]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"status": "deleted"}, "status 'deleted' is not open, won or lost"),
        ({"probability": 33.3}, "probability 33.3 is not a whole percentage from 0 to 100"),
        ({"value": 10.125}, "value 10.125 is not an amount of money with at most two decimals"),
        ({"value": "10"}, "value '10' is not an amount of money"),
        ({"expected_close_date": "2024-02-30"}, "expected_close_date '2024-02-30' is not a date like 2024-01-31"),
        ({"won_time": "yesterday"}, "won_time 'yesterday' is not a timestamp"),
    ],
    ids=["status", "probability", "cents", "text-value", "date", "time"],
)
def test_a_deal_not_as_documented_is_one_error_line_naming_it(project, runner, account, fields, message):
    account.deals[0].update(fields)
    result = pull_cli(runner)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: /api/v2/deals deal {account.deals[0]['id']}: {message}"), result.stderr
    assert result.stderr.count("\n") == 1


# --- where the company's address goes -----------------------------------------------------


def test_init_writes_where_the_address_goes_and_a_pull_says_to_fill_it_in(tmp_path, monkeypatch, runner):
    from funnel.project.config import load_config
    from funnel.project.scaffold import init

    init(tmp_path / "shop")
    work_in(tmp_path / "shop", monkeypatch)
    monkeypatch.delenv("PIPEDRIVE_API_URL", raising=False)
    monkeypatch.setenv("PIPEDRIVE_API_TOKEN", TOKEN)
    settings = tmp_path / "shop" / "environments.toml"
    assert '\n[pipedrive]\n# api_url = "https://yourcompany.pipedrive.com"\n' in settings.read_text()
    assert load_config().pipedrive.api_url is None

    result = pull_cli(runner)
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: no Pipedrive address; set api_url in the [pipedrive] table of {settings} "
        "(e.g. https://yourcompany.pipedrive.com) or PIPEDRIVE_API_URL.\n"
    )
    settings.write_text(settings.read_text().replace("# api_url", "api_url"))
    assert load_config().pipedrive.api_url == "https://yourcompany.pipedrive.com"


def test_every_readme_example_of_environments_toml_shows_the_api_url():
    readme = (REPO / "README.md").read_text()
    blocks = re.findall(r"```toml\n(.*?)```", readme, flags=re.S)
    settings = [b for b in blocks if not b.startswith("[rep_")]  # the one other is a columns.toml
    assert len(settings) >= 4
    for block in settings:
        address = tomllib.loads(block)["pipedrive"].get("api_url")
        commented = '\n# api_url = "https://yourcompany.pipedrive.com"\n' in block  # as funnel init writes it
        assert address == "https://yourcompany.pipedrive.com" or commented, block
    assert (REPO / "environments.toml").read_text() in settings  # README shows the file init writes
