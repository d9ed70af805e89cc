"""`funnel pull` against a fake Pipedrive API served from a thread of this process.

The fake serves a small subset of the bundled sample export in the documented response
shapes (v1 offset and v2 cursor pagination, deal flows), and fails on demand: 429 with
Retry-After, 5xx, 401/403/404, truncated and invalid bodies, slow answers.
"""

from __future__ import annotations

import csv
import functools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from funnel.pipedrive import pull as pipedrive
from funnel.pipedrive import rows as api_rows
from funnel.pipedrive.client import PullError, RetryPolicy
from funnel.pipedrive.journal import JOURNAL_FORMAT
from funnel.project.config import load_config
from tests.conftest import REPO, read_report, sampled

TOKEN = "tok5ecret0f7he7e575"
SHORT_TIMEOUT = 2.0  # the read timeout of pulls under test (the sleeps fixture)
OLD = "2024-01-01T00:00:00Z"
FILES = ["deal_changes.csv", "activity.csv", "activity_types.csv", "fields.csv", "stages.csv", "users.csv"]


def read_csv(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def sample_subset(deals: int = 12, activities: int = 40, users: int = 15) -> dict[str, list[list[str]]]:
    """A few deals with their whole change log, some activities and users, all the small tables."""
    raw = {name: read_csv(REPO / "raw_data" / name) for name in FILES}
    deal_ids: list[str] = []
    for row in raw["deal_changes.csv"][1:]:
        if row[0] not in deal_ids and len(deal_ids) < deals:
            deal_ids.append(row[0])
    subset = dict(raw)
    subset["deal_changes.csv"] = raw["deal_changes.csv"][:1] + [r for r in raw["deal_changes.csv"][1:] if r[0] in deal_ids]
    subset["activity.csv"] = raw["activity.csv"][: activities + 1]
    subset["users.csv"] = raw["users.csv"][: users + 1]
    return subset


def write_export(folder: Path, tables: dict[str, list[list[str]]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in tables.items():
        with (folder / name).open("w", newline="", encoding="utf-8") as f:
            csv.writer(f, lineterminator="\n").writerows(rows)


class FakePipedrive:
    """The API objects behind a CSV export, served the way Pipedrive documents them."""

    def __init__(self, tables: dict[str, list[list[str]]], page_size: int = 4) -> None:
        self.page_size = page_size
        self.faults: list[tuple[str, str]] = []  # (path prefix, fault), each used once
        self.log: list[tuple[str, dict[str, list[str]], dict[str, str]]] = []
        self.delay = 0.0  # seconds before each deal flow answer
        self.stuck_cursor = False  # v2 lists answer the same next_cursor again and again
        self.daily: int | None = None  # tokens left today, reported in x-daily-ratelimit-token-remaining
        self.lists_deleted = False  # v2 lists also give items marked deleted (is_deleted true), undocumented
        self.spent = 0  # tokens charged, at the costs below
        body = {name: rows[1:] for name, rows in tables.items()}
        # v2 StageItem and PipelineItem; a two-column stages.csv is one pipeline, ordered by stage id.
        self.pipelines = [{"id": 1, "name": "Sales", "order_nr": 1, "is_deleted": False, "update_time": OLD}]
        self.stages = [
            {"id": int(row[0]), "name": row[1], "pipeline_id": 1, "order_nr": int(row[0]), "deal_probability": 100}
            for row in body["stages.csv"]
        ]
        self.users = [
            {"id": int(i), "name": n, "email": e, "modified": m, "active_flag": True} for i, n, e, m in body["users.csv"]
        ]
        self.activity_types = [
            {"id": int(i), "name": n, "active_flag": a == "Yes", "key_string": t, "icon_key": "call"}
            for i, n, a, t in body["activity_types.csv"]
        ]
        self.deal_fields = [{"id": 1, "key": "title", "name": "Title", "field_type": "varchar", "options": None}]
        for i, key, name, options in body["fields.csv"]:
            labels = [{"id": int(o["id"]), "label": o["label"]} for o in json.loads(options)] if options else None
            self.deal_fields.append({"id": int(i), "key": key, "name": name, "field_type": "enum", "options": labels})
        self.activities = [
            {
                "id": int(i),
                "subject": "Call",
                "type": t,
                "owner_id": int(u) if u else None,
                "deal_id": int(d) if d else None,
                "done": done == "True",
                "due_date": due[:10] or None,
                "due_time": due[11:] or None,
                "update_time": OLD,
            }
            for i, t, u, d, done, due in body["activity.csv"]
        ]
        # The API gives a lost reason as its label (v2 DealItem lost_reason: string); the export, the id.
        reasons = {o["id"]: o["label"] for key, o in self.options() if key == "lost_reason"}
        self.flows: dict[int, list[dict]] = {}
        for n, (deal, at, key, value) in enumerate(body["deal_changes.csv"]):
            api_value = value.replace("T", " ") if key == "add_time" else value  # the API writes a space
            api_value = reasons.get(value, value) if key == "lost_reason" else api_value
            change = {"id": n, "item_id": int(deal), "field_key": key, "old_value": None, "new_value": api_value, "log_time": at}
            self.flows.setdefault(int(deal), []).append({"object": "dealChange", "timestamp": at, "data": change})
        for deal, items in self.flows.items():
            noise = {
                "id": 10_000 + deal,
                "item_id": deal,
                "field_key": "value",
                "new_value": "100",
                "log_time": "2024-01-02 00:00:00",
            }
            items.append({"object": "dealChange", "timestamp": noise["log_time"], "data": noise})
            items.append({"object": "activity", "timestamp": "2024-01-03 00:00:00", "data": {"id": 1, "subject": "Call"}})
            items.reverse()  # newest first, like the API
        self.deals = [self.deal(deal) for deal in self.flows]
        self.archived: list[dict] = []  # GET /api/v2/deals/archived

    def delete_activity(self, activity_id: int, at: str) -> None:
        """What DELETE /api/v2/activities/{id} does: the activity is marked deleted (purged 30 days later)."""
        next(a for a in self.activities if a["id"] == activity_id).update(is_deleted=True, update_time=at)

    def options(self) -> list[tuple[str, dict]]:
        return [(f["key"], {"id": str(o["id"]), "label": o["label"]}) for f in self.deal_fields for o in f["options"] or []]

    def deal(self, deal: int, **fields: Any) -> dict:
        """A v2 DealItem: status, money and times as Pipedrive documents them."""
        item = {
            "id": deal,
            "title": f"Deal {deal}",
            "owner_id": 1,
            "pipeline_id": 1,
            "stage_id": 1,
            "status": "open",
            "value": 1500.5,
            "currency": "EUR",
            "add_time": "2024-01-02T03:04:05Z",
            "update_time": OLD,
            "won_time": None,
            "lost_time": None,
            "expected_close_date": None,
            "probability": None,
            "lost_reason": None,
            "is_archived": False,
        }
        return {**item, **fields}

    # --- serving -----------------------------------------------------------------------

    def answer(self, path: str, query: dict[str, list[str]]) -> tuple[int, dict]:
        v1 = {
            "/api/v1/users": self.users,
            "/api/v1/activityTypes": self.activity_types,
            "/api/v1/dealFields": self.deal_fields,
        }
        v2 = {
            "/api/v2/stages": self.stages,
            "/api/v2/pipelines": self.pipelines,
            "/api/v2/activities": self.activities,
            "/api/v2/deals": self.deals,
            "/api/v2/deals/archived": self.archived,
        }
        if path in v1:
            return 200, self.offset_page(v1[path], query)
        if path in v2:
            since = query.get("updated_since", [""])[0]
            listed = [i for i in v2[path] if i.get("update_time", "") >= since]
            if not self.lists_deleted:
                listed = [i for i in listed if not i.get("is_deleted")]
            return 200, self.cursor_page(listed, query)
        parts = path.split("/")
        if len(parts) == 6 and parts[:4] == ["", "api", "v1", "deals"] and parts[5] == "flow":
            time.sleep(self.delay)
            deal = int(parts[4])
            if deal not in self.flows:
                return 404, {"success": False, "error": "Deal not found", "errorCode": 404}
            return 200, self.offset_page(self.flows[deal], query)
        return 404, {"success": False, "error": "Unknown method ."}

    def offset_page(self, items: list[dict], query: dict[str, list[str]]) -> dict:
        start = int(query.get("start", ["0"])[0])
        limit = min(int(query.get("limit", ["100"])[0]), self.page_size)
        more = start + limit < len(items)
        pagination = {"start": start, "limit": limit, "more_items_in_collection": more}
        if more:
            pagination["next_start"] = start + limit
        return {"success": True, "data": items[start : start + limit] or None, "additional_data": {"pagination": pagination}}

    def cursor_page(self, items: list[dict], query: dict[str, list[str]]) -> dict:
        start = int(query.get("cursor", ["c0"])[0][1:])
        limit = min(int(query.get("limit", ["100"])[0]), self.page_size)
        more = start + limit < len(items)
        if self.stuck_cursor and more:
            return {"success": True, "data": items[:limit], "additional_data": {"next_cursor": f"c{limit}"}}
        return {
            "success": True,
            "data": items[start : start + limit],
            "additional_data": {"next_cursor": f"c{start + limit}" if more else None},
        }

    @staticmethod
    def cost(path: str) -> int:
        """What Pipedrive charges (the costs docs/pipedrive-api.md cites): flow 40, v2 list 10, v1 list 20."""
        return 40 if path.endswith("/flow") else 10 if path.startswith("/api/v2/") else 20

    def fault_for(self, path: str) -> str | None:
        for i, (prefix, fault) in enumerate(self.faults):
            if path.startswith(prefix):
                del self.faults[i]
                return fault
        return None

    def requests_to(self, prefix: str) -> list[dict[str, list[str]]]:
        return [query for path, query, _ in self.log if path.startswith(prefix)]


def handler_for(fake: FakePipedrive) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # else each answer waits 40 ms for a delayed ACK

        def log_message(self, *args: Any) -> None:
            pass

        def send(self, status: int, body: bytes, headers: dict[str, str] | None = None, length: int | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body) if length is None else length))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            fake.log.append((url.path, query, dict(self.headers)))
            if self.headers.get("x-api-token") != TOKEN:
                return self.send(401, b'{"success": false, "error": "unauthorized access", "errorCode": 401}')
            fault = fake.fault_for(url.path)
            limits = {"x-ratelimit-limit": "80", "x-ratelimit-remaining": "79", "x-ratelimit-reset": "2"}  # Professional plan
            if fake.daily is not None:
                if fake.daily < fake.cost(url.path):  # what Pipedrive does when the day's budget is spent
                    body = b'{"success": false, "error": "Daily token budget exceeded"}'
                    return self.send(429, body, {"Retry-After": "36000", "x-daily-ratelimit-token-remaining": "0"})
                fake.daily -= fake.cost(url.path)
                fake.spent += fake.cost(url.path)
                limits["x-daily-ratelimit-token-remaining"] = str(fake.daily)
            if fault == "429":
                return self.send(429, b'{"success": false, "error": "Too Many Requests"}', {"Retry-After": "0"})
            if fault == "429-daily":
                return self.send(429, b'{"success": false, "error": "Daily limit"}', {"Retry-After": "36000"})
            if fault in ("500", "503", "401", "403", "404"):
                return self.send(int(fault), b'{"success": false, "error": "fault"}')
            if fault == "echo":
                text = f"invalid request /api/v2/stages?api_token={TOKEN}, token {TOKEN}"
                return self.send(400, json.dumps({"success": False, "error": text}).encode())
            if fault == "invalid":
                return self.send(200, b'{"success": true, "data": [{"id": 1,')
            if fault and fault.count("|") == 2:  # "status|header|value": an answer with that header
                status_text, name, value = fault.split("|")
                body = b'{"success": false, "error": "Too Many Requests"}'
                if status_text == "200":
                    body = json.dumps(fake.answer(url.path, query)[1]).encode()
                return self.send(int(status_text), body, {name: value})
            if fault == "drip":  # a whole, valid answer, one byte every 0.1 s
                data = json.dumps(fake.answer(url.path, query)[1]).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                for i in range(len(data)):
                    self.wfile.write(data[i : i + 1])
                    self.wfile.flush()
                    time.sleep(0.1)
                return None
            if fault == "slow":
                time.sleep(SHORT_TIMEOUT + 0.5)
            status, body = fake.answer(url.path, query)
            data = json.dumps(body).encode()
            if fault == "truncated":  # promises more bytes than it sends, then hangs up
                self.send(status, data[: len(data) // 2], length=len(data))
                self.close_connection = True
                return
            if fault == "window-used":
                limits.update({"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1"})
            self.send(status, data, limits)

    return Handler


class QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that timed out and hung up is what some tests are about


@pytest.fixture
def subset() -> dict[str, list[list[str]]]:
    return sample_subset()


@pytest.fixture
def fake(subset: dict[str, list[list[str]]], monkeypatch: pytest.MonkeyPatch) -> Any:
    fake = FakePipedrive(subset)
    server = QuietServer(("127.0.0.1", 0), handler_for(fake))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)  # shutdown() waits one poll
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("PIPEDRIVE_API_URL", fake.url)
    monkeypatch.setenv("PIPEDRIVE_API_TOKEN", TOKEN)
    yield fake
    server.shutdown()
    server.server_close()


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Retries do not sleep; the requested waits are recorded. The read timeout is short
    enough for the "slow" fault to pass it, long enough that a busy machine's local answer
    (CI runs tests side by side) does not time out and add a retry."""
    asked: list[float] = []
    monkeypatch.setattr(pipedrive, "RetryPolicy", functools.partial(RetryPolicy, timeout=SHORT_TIMEOUT, sleep=asked.append))
    return asked


def pull_cli(runner: Any, *args: str) -> Any:
    from funnel.cli import app

    return runner.invoke(app, ["pull", *args])


def export_bytes(folder: Path) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in FILES}


def scratch_folders(project: Path) -> list[Path]:
    return sorted(project.glob(".raw_data.pull-*"))


# --- the pulled export is the export -------------------------------------------------


@pytest.mark.slow
def test_pulled_files_build_the_same_report_as_the_csv_export(project, runner, fake, subset, sleeps):
    write_export(project / "direct", subset)
    result = pull_cli(runner, "--out", "pulled")
    assert result.exit_code == 0, result.output
    assert (
        "Pulled everything into" in result.output
        and f"deal_changes {len(subset['deal_changes.csv']) - 1:,} rows" in result.output
    )

    for name in FILES:
        pulled, direct = read_csv(project / "pulled" / name), subset[name]
        if name == "stages.csv":  # the pull adds each stage's pipeline, order and probability
            pulled = [r[: len(direct[0])] for r in pulled]
        assert pulled[0] == direct[0], name
        pulled, direct = pulled[1:], direct[1:]
        if name == "fields.csv":  # the same JSON, written by another JSON writer
            pulled = [r[:3] + [json.loads(r[3]) if r[3] else None] for r in pulled]
            direct = [r[:3] + [json.loads(r[3]) if r[3] else None] for r in direct]
        assert sorted(pulled) == sorted(direct), name

    from funnel.cli import app

    reports = []
    for folder in ("direct", "pulled"):
        built = runner.invoke(app, ["build", "--raw-data", folder])
        assert built.exit_code == 0, built.output
        reports.append(read_report(project / "target" / "dev.duckdb"))
    assert reports[0] == reports[1] and reports[0]


def test_every_page_of_every_list_is_fetched(project, runner, fake, subset, sleeps):
    assert pull_cli(runner).exit_code == 0
    assert [q.get("start") for q in fake.requests_to("/api/v1/users")] == [None, ["4"], ["8"], ["12"]]
    assert [q.get("cursor") for q in fake.requests_to("/api/v2/stages")] == [None, ["c4"], ["c8"]]
    assert len(fake.requests_to("/api/v2/activities")) == 10  # 40 activities, 4 a page: cursor followed to the end
    assert len(read_csv(project / "raw_data" / "activity.csv")) == len(subset["activity.csv"])
    assert all(q["items"] == ["dealChange"] for q in fake.requests_to("/api/v1/deals/"))


def test_a_second_pull_writes_the_same_bytes_in_a_stable_order(project, runner, fake, sleeps):
    assert pull_cli(runner).exit_code == 0
    first = export_bytes(project / "raw_data")
    for items in fake.flows.values():
        items.reverse()
    fake.activities.reverse()
    assert pull_cli(runner).exit_code == 0
    assert export_bytes(project / "raw_data") == first
    rows = read_csv(project / "raw_data" / "deal_changes.csv")[1:]
    assert rows == sorted(rows, key=lambda r: (int(r[0]), r[1], r[2], r[3]))


def test_build_pull_pulls_then_builds(project, runner, fake, subset, sleeps):
    from funnel.cli import app

    write_export(project / "direct", subset)
    assert runner.invoke(app, ["build", "--raw-data", "direct"]).exit_code == 0
    expected = read_report(project / "target" / "dev.duckdb")
    result = runner.invoke(app, ["build", "--pull"])
    assert result.exit_code == 0, result.output
    assert "Pulled everything into" in result.output and "Done: env dev" in result.output
    assert read_report(project / "target" / "dev.duckdb") == expected


def test_progress_reports_counts(project, fake, sleeps):
    seen: list[tuple[str, int, int]] = []
    pipedrive.pull(load_config(), project / "raw_data", on_progress=lambda *a: seen.append(a))
    logs = [s for s in seen if s[0] == "deal change logs"]
    assert logs[-1] == ("deal change logs", len(fake.flows), len(fake.flows))
    assert ("activities", len(fake.activities), 0) in seen


# --- a well-behaved client -------------------------------------------------------------


def test_429_waits_as_long_as_retry_after_says(project, fake, sleeps):
    fake.faults = [("/api/v2/stages", "429"), ("/api/v2/deals", "429")]
    result = pipedrive.pull(load_config(), project / "raw_data")
    assert result.rows["stages"] == len(fake.stages)
    assert sleeps == [0.0, 0.0]


def test_a_used_up_rate_window_is_waited_out_before_the_next_request(project, fake, sleeps):
    fake.faults = [("/api/v1/users", "window-used")]
    pipedrive.pull(load_config(), project / "raw_data")
    assert sleeps == [1.0]


def test_a_retry_after_of_hours_stops_cleanly_instead_of_waiting(project, runner, fake, sleeps):
    fake.faults = [("/api/v1/activityTypes", "429-daily")]
    before = export_bytes(project / "raw_data")
    result = pull_cli(runner)
    assert result.exit_code == 3
    assert result.stderr.startswith(
        "Stopped early, resume later: GET /api/v1/activityTypes: Pipedrive's rate limit asks to wait 36,000 s (HTTP 429)"
    )
    assert "daily API budget" in result.stderr and sleeps == []
    assert export_bytes(project / "raw_data") == before


@pytest.mark.parametrize("fault", sampled(["500", "503", "truncated", "invalid", "slow"], {"503", "truncated"}))
def test_server_errors_and_broken_bodies_are_retried_with_backoff(project, fake, sleeps, fault):
    fake.faults = [("/api/v1/dealFields", fault), ("/api/v1/dealFields", fault)]
    result = pipedrive.pull(load_config(), project / "raw_data")
    assert result.rows["fields"] == 4
    assert sleeps == [1.0, 2.0]  # exponential backoff from the 1 s base


def test_a_server_that_keeps_failing_is_an_error_after_bounded_tries(project, runner, fake, sleeps):
    deal = min(fake.flows)
    fake.faults = [(f"/api/v1/deals/{deal}/flow", "500")] * 5
    before = export_bytes(project / "raw_data")
    result = pull_cli(runner)
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: GET /api/v1/deals/{deal}/flow failed 5 times (last: HTTP 500); Pipedrive may be down, try again later.\n"
    )
    assert sleeps == [1.0, 2.0, 4.0, 8.0, 16.0]
    assert export_bytes(project / "raw_data") == before and scratch_folders(project) == []


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("401", "Error: Pipedrive refused the API token (HTTP 401 on GET /api/v2/stages); check PIPEDRIVE_API_TOKEN"),
        ("403", "Error: the API token's user may not read GET /api/v2/stages (HTTP 403); use the token of a user with global"),
        ("404", "Error: GET http://127.0.0.1:{port}/api/v2/stages was not found (HTTP 404); check the api_url"),
    ],
    ids=["unauthorized", "forbidden", "not-found"],
)
def test_refusals_are_one_line_errors(project, runner, fake, sleeps, fault, message):
    fake.faults = [("/api/v2/stages", fault)]
    before = export_bytes(project / "raw_data")
    result = pull_cli(runner)
    assert result.exit_code == 1
    assert result.stderr.startswith(message.format(port=fake.url.rsplit(":", 1)[1]))
    assert result.stderr.count("\n") == 1 and sleeps == []
    assert export_bytes(project / "raw_data") == before


def test_an_answer_that_drips_is_cut_off_at_the_deadline(project, runner, fake, monkeypatch):
    """Every read comes within the read timeout, but the whole answer would take minutes."""
    policy = functools.partial(RetryPolicy, timeout=0.3, deadline=0.6, tries=2, sleep=lambda s: None)
    monkeypatch.setattr(pipedrive, "RetryPolicy", policy)
    fake.faults = [("/api/v2/stages", "drip")] * 2
    before = export_bytes(project / "raw_data")
    started = time.monotonic()
    result = pull_cli(runner)
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("Error: GET /api/v2/stages failed 2 times (last: ReadTimeout")
    assert result.stderr.count("\n") == 1
    assert time.monotonic() - started < 5  # two answers of 1 s each, not the 60 s the drips would take
    assert export_bytes(project / "raw_data") == before


def test_a_cursor_that_never_changes_is_an_error_naming_the_endpoint(project, runner, fake, sleeps):
    fake.stuck_cursor = True
    result = pull_cli(runner, "--budget", "300")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: GET /api/v2/stages: the API sent next_cursor 'c4' a second time;")
    assert len(fake.requests_to("/api/v2/stages")) == 2  # not 300: the second 'c4' is enough


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("429|Retry-After|nan", "Error: GET /api/v2/stages: the Retry-After header 'nan' is neither seconds nor an HTTP date"),
        ("429|Retry-After|-3", "Error: GET /api/v2/stages: the Retry-After header '-3' is neither seconds nor an HTTP date"),
        ("429|x-ratelimit-reset|nan", "Error: GET /api/v2/stages: the x-ratelimit-reset header 'nan' is not a number"),
        ("200|x-ratelimit-reset|nan", "Error: GET /api/v2/stages: the x-ratelimit-reset header 'nan' is not a number"),
        ("200|x-ratelimit-remaining|inf", "Error: GET /api/v2/stages: the x-ratelimit-remaining header 'inf' is not a number"),
    ],
    ids=["retry-after-nan", "retry-after-negative", "429-reset-nan", "200-reset-nan", "remaining-inf"],
)
def test_headers_that_are_not_numbers_are_one_line_errors(project, runner, fake, sleeps, fault, message):
    fake.faults = [("/api/v2/stages", fault)]
    before = export_bytes(project / "raw_data")
    result = pull_cli(runner)
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith(message) and result.stderr.count("\n") == 1
    assert export_bytes(project / "raw_data") == before


def test_a_retry_after_date_in_utc_with_an_unknown_zone_is_waited_for(project, fake, sleeps):
    """RFC 5322 writes '-0000' for UTC when the sender's zone is unknown: a date without a zone."""
    import email.utils

    soon = email.utils.format_datetime(datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=30))
    assert soon.endswith("+0000")
    fake.faults = [
        ("/api/v2/stages", f"429|Retry-After|{soon[:-5]}-0000"),
        ("/api/v1/users", "429|Retry-After|Mon, 01 Jan 2024 00:00:00 -0000"),
    ]
    result = pipedrive.pull(load_config(), project / "raw_data")
    assert result.rows["stages"] == len(fake.stages)
    assert 25 < sleeps[0] <= 30 and sleeps[1] == 0.0  # a date in the past: at once


def test_a_user_modified_at_the_start_of_year_one_is_an_error(project, runner, fake, sleeps):
    fake.users[2]["modified"] = "0001-01-01T00:10:00+01:00"  # before year 1 in UTC
    fake.users[3]["modified"] = "0999-12-31 23:00:00"
    result = pull_cli(runner)
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: user: modified '0001-01-01T00:10:00+01:00' is not a timestamp like 2024-01-31 13:45:00 "
        "(years 1000 to 9999, UTC).\n"
    )
    fake.users[2]["modified"] = "2024-01-01 00:00:00"
    result = pull_cli(runner)
    assert result.exit_code == 1 and "modified '0999-12-31 23:00:00' is not a timestamp" in result.stderr


def test_the_summary_says_how_many_deals_were_skipped_and_why(project, runner, fake, sleeps):
    gone = sorted(fake.flows)[1:3]
    for deal in gone:
        del fake.flows[deal]  # listed, but deleted before its change log was read
    result = pull_cli(runner)
    assert result.exit_code == 0, result.output
    assert "Skipped 2 deal(s) deleted while the pull ran: Pipedrive answered 404 for their change logs" in result.stderr
    assert not {r[0] for r in read_csv(project / "raw_data" / "deal_changes.csv")[1:]} & {str(d) for d in gone}


def test_a_wrong_token_is_a_401_error(project, runner, fake, monkeypatch):
    monkeypatch.setenv("PIPEDRIVE_API_TOKEN", "not-the-token")
    result = pull_cli(runner)
    assert result.exit_code == 1 and "Error: Pipedrive refused the API token (HTTP 401" in result.stderr


def test_connection_refused_is_an_error_at_once(project, runner, monkeypatch, sleeps):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once the socket is closed
    monkeypatch.setenv("PIPEDRIVE_API_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("PIPEDRIVE_API_TOKEN", TOKEN)
    result = pull_cli(runner)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: cannot connect to http://127.0.0.1:{port} (")
    assert result.stderr.endswith("check the api_url and the network.\n") and sleeps == []


@pytest.mark.slow
def test_a_server_that_never_answers_in_time_is_an_error(project, runner, fake, sleeps):
    fake.faults = [("/api/v2/stages", "slow")] * 5
    result = pull_cli(runner)
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: GET /api/v2/stages failed 5 times (last: ReadTimeout")


def test_the_token_never_reaches_output_urls_or_files(project, runner, fake, sleeps):
    fake.faults = [("/api/v2/stages", "echo")]
    failed = pull_cli(runner)
    assert failed.exit_code == 1 and "api_token=***" in failed.stderr
    assert pull_cli(runner, "--out", "pulled").exit_code == 0
    merged = pull_cli(runner, "--out", "pulled", "--since", "last")
    assert merged.exit_code == 0
    assert all(TOKEN not in r.output for r in (failed, merged))
    assert all(TOKEN not in str(query) for _, query, _ in fake.log)
    assert all(headers.get("x-api-token") == TOKEN for _, _, headers in fake.log)
    for path in project.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path


def test_a_value_of_the_wrong_type_names_the_object_and_field(project, runner, fake):
    fake.activities[3]["owner_id"] = "12x"
    result = pull_cli(runner)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: activity {fake.activities[3]['id']}: owner_id '12x' is not a whole number")


# --- budget ------------------------------------------------------------------------------


def flows_fetched(fake: FakePipedrive) -> list[int]:
    return [int(path.split("/")[4]) for path, _, _ in fake.log if path.endswith("/flow")]


def journal_deals(project: Path, folder: str = "raw_data") -> set[int]:
    path = project / f".{folder}.resume.jsonl"
    if not path.exists():
        return set()
    lines = path.read_bytes().split(b"\n")[1:]
    return {json.loads(line)["deal"] for line in lines if line.strip() and line.endswith(b"}")}


def test_the_request_budget_stops_the_pull_cleanly_and_the_next_pull_continues(project, runner, fake, sleeps):
    assert pull_cli(runner, "--out", "probe").exit_code == 0
    budget = len(fake.log) - 3  # three requests short of the whole pull
    fake.log.clear()
    before = export_bytes(project / "raw_data")
    result = pull_cli(runner, "--budget", str(budget))
    assert result.exit_code == 3, result.output
    kept = journal_deals(project)
    assert 0 < len(kept) < len(fake.flows)
    assert kept == set(sorted(fake.flows)[: len(kept)])  # in deal order, as a pull one at a time keeps them
    assert result.stderr.startswith(
        f"Stopped early, resume later: the pull used its request budget of {budget} requests; {len(kept)} of "
        f"{len(fake.flows)} deal change logs are kept in .raw_data.resume.jsonl. Run funnel pull again to continue"
    )
    assert len(fake.log) == budget and export_bytes(project / "raw_data") == before
    fake.log.clear()

    result = pull_cli(runner)
    assert result.exit_code == 0, result.output
    assert f"resuming: {len(kept)} of {len(fake.flows)} deals already fetched" in result.stderr
    assert sorted(set(flows_fetched(fake))) == sorted(fake.flows)[len(kept) :]  # not one kept log again
    assert export_bytes(project / "raw_data") == export_bytes(project / "probe")
    assert not (project / ".raw_data.resume.jsonl").exists()


def test_a_resumed_pull_refetches_deals_updated_since_and_equals_a_pull_in_one_go(project, fake, sleeps):
    seen: list[str] = []

    def interrupt(label: str, done: int, total: int) -> None:
        if label == "deal change logs" and done == 6:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pipedrive.pull(load_config(), project / "raw_data", on_progress=interrupt)
    kept = journal_deals(project)
    assert len(kept) == 6
    changed = sorted(kept)[0]
    change = {"id": 99_999, "item_id": changed, "field_key": "stage_id", "new_value": "7", "log_time": "2025-03-04 05:06:07"}
    fake.flows[changed].insert(0, {"object": "dealChange", "timestamp": change["log_time"], "data": change})
    next(d for d in fake.deals if d["id"] == changed)["update_time"] = "2025-03-04T05:06:07Z"
    fake.log.clear()

    result = pipedrive.pull(load_config(), project / "raw_data", on_notice=seen.append)
    assert seen == [f"resuming: 5 of {len(fake.flows)} deals already fetched"] and result.resumed_deals == 5
    assert sorted(set(flows_fetched(fake))) == sorted(set(fake.flows) - kept | {changed})
    assert ["7", "2025-03-04 05:06:07"] == [
        [r[3], r[1]] for r in read_csv(project / "raw_data" / "deal_changes.csv") if r[0] == str(changed)
    ][-1]
    pipedrive.pull(load_config(), project / "whole")
    assert export_bytes(project / "raw_data") == export_bytes(project / "whole")


def test_the_pull_stops_at_its_share_of_the_daily_budget_and_the_next_day_completes(project, runner, fake, sleeps):
    fake.daily = 10**9
    assert pull_cli(runner, "--out", "probe").exit_code == 0
    whole = fake.spent  # what a whole pull costs at the documented rates
    fake.log.clear()
    fake.daily, fake.spent = whole, 0  # today's budget: the whole pull; funnel may spend half of it
    before = export_bytes(project / "raw_data")
    result = pull_cli(runner)
    assert result.exit_code == 3, result.output
    kept = journal_deals(project)
    assert result.stderr.startswith(
        f"Stopped early, resume later: funnel's share of today's API budget is spent: about {fake.spent:,} tokens of the "
        f"{whole // 2:,} allowed ([pipedrive] budget_share 0.5 of the {whole:,} left when the pull started); "
        f"{len(kept)} of {len(fake.flows)} deal change logs are kept in .raw_data.resume.jsonl. Run funnel pull again "
        "after Pipedrive resets the daily budget (tomorrow) to continue."
    )
    assert whole // 2 - 40 < fake.spent <= whole // 2  # the share, not a token more; less than one more request short
    assert 0 < len(kept) < len(fake.flows)
    assert export_bytes(project / "raw_data") == before
    fake.log.clear()

    fake.daily = 10 * whole  # the next day
    result = pull_cli(runner)
    assert result.exit_code == 0, result.output
    assert f"resuming: {len(kept)} of {len(fake.flows)} deals already fetched" in result.stderr
    assert not set(flows_fetched(fake)) & kept
    assert export_bytes(project / "raw_data") == export_bytes(project / "probe")


def test_budget_share_comes_from_the_config(project, runner, fake, sleeps):
    with (project / "environments.toml").open("a") as f:
        f.write("\n[pipedrive]\nbudget_share = 0.02\n")
    fake.daily = 10_000
    result = pull_cli(runner)
    assert result.exit_code == 3 and "of the 200 allowed ([pipedrive] budget_share 0.02 of the 10,000 left" in result.stderr
    assert fake.spent <= 200


def test_kept_progress_of_another_address_or_cut_short_is_not_trusted(project, fake, sleeps):
    journal = project / ".raw_data.resume.jsonl"
    header = {"format": JOURNAL_FORMAT, "api_url": fake.url, "fields": list(api_rows.TRACKED_FIELDS)}
    deal = sorted(fake.flows)[0]
    other = sorted(fake.flows)[1]
    forged = [[str(deal), "2020-01-01 00:00:00", "stage_id", "666"]]
    lines = [
        json.dumps({**header, "api_url": "http://127.0.0.1:1"}),
        json.dumps({"deal": deal, "update_time": OLD, "rows": forged}),
    ]
    journal.write_text("\n".join(lines) + "\n")
    pipedrive.pull(load_config(), project / "raw_data")
    assert deal in flows_fetched(fake) and "666" not in (project / "raw_data" / "deal_changes.csv").read_text()

    fake.log.clear()
    bad_rows = [[str(other), "x"]]  # not four columns
    lines = [json.dumps(header), json.dumps({"deal": other, "update_time": OLD, "rows": bad_rows})]
    journal.write_text("\n".join(lines) + "\n" + json.dumps({"deal": deal, "update_time": OLD, "rows": forged})[:30])
    result = pipedrive.pull(load_config(), project / "raw_data")
    assert result.resumed_deals == 0 and {deal, other} <= set(flows_fetched(fake))
    assert not journal.exists()


def test_the_budget_is_a_hard_limit_on_requests_from_the_config(project, runner, fake, sleeps):
    with (project / "environments.toml").open("a") as f:
        f.write("\n[pipedrive]\nrequest_budget = 3\n")
    result = pull_cli(runner)
    assert result.exit_code == 1 and "used its whole request budget of 3 requests" in result.stderr
    assert len(fake.log) == 3


# --- all or nothing ------------------------------------------------------------------------


def test_an_interrupted_pull_leaves_the_previous_export_untouched(project, fake, sleeps):
    before = export_bytes(project / "raw_data")

    def interrupt(label: str, done: int, total: int) -> None:
        if label == "deal change logs" and done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pipedrive.pull(load_config(), project / "raw_data", on_progress=interrupt)
    assert export_bytes(project / "raw_data") == before
    assert scratch_folders(project) == [] and not (project / "raw_data" / ".funnel-pull.json").exists()


@pytest.mark.slow
def test_a_killed_pull_leaves_the_export_and_the_next_pull_cleans_up(project, fake, sleeps):
    before = export_bytes(project / "raw_data")
    fake.delay = 0.3
    env = {**os.environ, "FUNNEL_PROJECT_DIR": str(project)}
    process = subprocess.Popen([sys.executable, "-m", "funnel", "pull"], env=env, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not fake.requests_to("/api/v1/deals/") and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert fake.requests_to("/api/v1/deals/"), "the pull never reached the deal logs"
    assert export_bytes(project / "raw_data") == before
    assert [p.name for p in scratch_folders(project)] == [f".raw_data.pull-{process.pid}"]

    fake.delay = 0
    pipedrive.pull(load_config(), project / "raw_data")
    assert scratch_folders(project) == []
    assert export_bytes(project / "raw_data") != before


@pytest.mark.slow
def test_a_pull_killed_at_random_points_resumes_to_the_same_files_without_refetching(project, fake, sleeps):
    import copy
    import random

    for n, items in enumerate(list(fake.flows.values())):  # twice the deals
        twin = 900_000 + n
        fake.flows[twin] = [copy.deepcopy(item) for item in items]
        for item in fake.flows[twin]:
            item["data"]["item_id"] = twin
        fake.deals.append(fake.deal(twin))
    pipedrive.pull(load_config(), project / "whole")
    flow_requests = len(flows_fetched(fake))
    fake.log.clear()
    before = export_bytes(project / "raw_data")
    fake.delay = 0.03
    env = {**os.environ, "FUNNEL_PROJECT_DIR": str(project)}
    rng = random.Random(26_22)
    completed: set[int] = set()  # deals whose log was kept when a pull was killed
    kills = 0
    for _ in range(6):
        fake.log.clear()
        process = subprocess.Popen([sys.executable, "-m", "funnel", "pull"], env=env, stderr=subprocess.DEVNULL)
        point = rng.randrange(max(1, flow_requests * (len(fake.flows) - len(completed)) // len(fake.flows)))
        deadline = time.monotonic() + 60
        while len(flows_fetched(fake)) < point and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(rng.uniform(0, 0.05))
        process.send_signal(signal.SIGKILL)
        code = process.wait()
        assert not set(flows_fetched(fake)) & completed, "a kept change log was fetched again"
        if code == 0:
            break
        kills += 1
        assert export_bytes(project / "raw_data") == before  # nothing changes until a pull completes
        completed |= journal_deals(project)
    fake.log.clear()
    finished = subprocess.run([sys.executable, "-m", "funnel", "pull"], env=env, capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr
    assert not set(flows_fetched(fake)) & completed
    assert kills >= 3 and len(completed) > 0
    assert export_bytes(project / "raw_data") == export_bytes(project / "whole")
    assert not (project / ".raw_data.resume.jsonl").exists()


# --- --since -------------------------------------------------------------------------------


def test_since_last_fetches_only_changes_and_merges_them(project, runner, fake, sleeps):
    assert pull_cli(runner).exit_code == 0
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    deal = sorted(fake.flows)[2]
    change = {"id": 99_999, "item_id": deal, "field_key": "stage_id", "new_value": "7", "log_time": "2025-03-04 05:06:07"}
    fake.flows[deal].insert(0, {"object": "dealChange", "timestamp": change["log_time"], "data": change})
    next(d for d in fake.deals if d["id"] == deal)["update_time"] = now
    fake.activities[5].update(done=not fake.activities[5]["done"], update_time=now)
    fake.activities.append({**fake.activities[0], "id": 123_456_789, "update_time": now})
    fake.log.clear()

    result = pull_cli(runner, "--since", "last")
    assert result.exit_code == 0, result.output
    assert "Pulled changes since" in result.output
    assert {p for p, _, _ in fake.log if "/flow" in p} == {f"/api/v1/deals/{deal}/flow"}
    # Deals and activities are listed whole, every pull: the files are their current state, and
    # one missing was deleted. That is a page per 500 (here the fake's page size) of each.
    assert not any("updated_since" in q for q in fake.requests_to("/api/v2/"))
    assert len(fake.requests_to("/api/v2/activities")) == -(-len(fake.activities) // fake.page_size)

    assert pull_cli(runner, "--out", "full").exit_code == 0
    assert export_bytes(project / "raw_data") == export_bytes(project / "full")


def test_since_a_timestamp_fetches_the_change_logs_of_the_deals_updated_at_or_after_it(project, runner, fake, sleeps):
    assert pull_cli(runner).exit_code == 0
    before, after = fake.deals[1], fake.deals[4]
    before["update_time"], after["update_time"] = "2024-06-01T07:59:59Z", "2024-06-01T08:00:00Z"
    fake.log.clear()
    assert pull_cli(runner, "--since", "2024-06-01T10:00:00+02:00").exit_code == 0
    assert set(flows_fetched(fake)) == {after["id"]}  # its every page, no other deal's


def test_since_needs_a_previous_export(project, runner, fake, sleeps):
    result = pull_cli(runner, "--out", "empty", "--since", "last")
    assert result.exit_code == 1
    assert "no previous export to merge into" in result.stderr and "run funnel pull without --since first" in result.stderr


def test_since_must_be_a_timestamp(project, runner):
    result = pull_cli(runner, "--since", "yesterday")
    assert result.exit_code == 2 and "'yesterday' is not 'last' or a timestamp" in result.stderr


# --- settings ----------------------------------------------------------------------------


def test_the_pipedrive_table_is_settings_not_an_environment(project, runner, fake, monkeypatch, sleeps):
    from funnel.cli import app

    monkeypatch.delenv("PIPEDRIVE_API_URL")
    with (project / "environments.toml").open("a") as f:
        f.write(f'\n[pipedrive]\napi_url = "{fake.url}"\nrequest_budget = 5000\n')
    assert pull_cli(runner).exit_code == 0
    result = runner.invoke(app, ["build", "--env", "pipedrive"])
    assert result.exit_code == 2 and "unknown environment 'pipedrive'" in result.stderr  # a name that names nothing


def test_the_environment_variable_wins_over_the_file(project, runner, fake, sleeps):
    with (project / "environments.toml").open("a") as f:
        f.write('\n[pipedrive]\napi_url = "https://nowhere.invalid"\n')
    assert pull_cli(runner).exit_code == 0


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('api_token = "abc"', "holds an API token; remove it and set PIPEDRIVE_API_TOKEN instead."),
        ('api_uri = "https://x.pipedrive.com"', "unknown key 'api_uri'. Did you mean 'api_url'?"),
        ("request_budget = 0", "request_budget must be 1 or more."),
        ("budget_share = 1.5", "budget_share must be more than 0 and at most 1"),
        ("budget_share = nan", "budget_share must be more than 0 and at most 1"),
        ("budget_share = 0", "budget_share must be more than 0 and at most 1"),
        ('budget_share = "half"', "key 'budget_share' must be a number"),
        ('request_budget = "many"', "key 'request_budget' must be a whole number"),
    ],
)
def test_bad_pipedrive_settings_are_errors(project, runner, table, message):
    from funnel.cli import app

    with (project / "environments.toml").open("a") as f:
        f.write(f"\n[pipedrive]\n{table}\n")
    result = runner.invoke(app, ["build"])
    assert result.exit_code == 1 and message in result.stderr and "[pipedrive]" in result.stderr


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://yourcompany.pipedrive.com", "must use https; the API token would travel unencrypted."),
        ("https://yourcompany.pipedrive.com/api/v1", "must not have a path"),
        ("https://yourcompany.pipedrive.com?api_token=abc", "must be a plain address"),
    ],
)
def test_unsafe_api_urls_are_refused(project, runner, monkeypatch, url, message):
    monkeypatch.setenv("PIPEDRIVE_API_URL", url)
    monkeypatch.setenv("PIPEDRIVE_API_TOKEN", TOKEN)
    result = pull_cli(runner)
    assert result.exit_code == 1 and message in result.stderr and "api_token=abc" not in result.stderr


def test_a_missing_token_says_where_it_comes_from(project, runner, monkeypatch):
    monkeypatch.delenv("PIPEDRIVE_API_TOKEN", raising=False)
    monkeypatch.setenv("PIPEDRIVE_API_URL", "https://yourcompany.pipedrive.com")
    result = pull_cli(runner)
    assert result.exit_code == 1 and result.stderr.startswith("Error: PIPEDRIVE_API_TOKEN is not set;")


def test_timestamps_of_both_api_versions_land_in_the_declared_layouts():
    assert api_rows._time({"t": "2024-04-27 04:51:50"}, "t", "user", "%Y-%m-%d %H:%M:%S.%f") == "2024-04-27 04:51:50.000000"
    assert api_rows._time({"t": "2024-04-27T04:51:50Z"}, "t", "x", "%Y-%m-%dT%H:%M:%S") == "2024-04-27T04:51:50"
    assert api_rows._time({"t": "2024-04-27T06:51:50+02:00"}, "t", "x", "%Y-%m-%d %H:%M:%S") == "2024-04-27 04:51:50"
    assert api_rows._activity({"id": 1, "type": "call", "done": False, "due_date": "2024-02-03", "due_time": "09:30"})[5] == (
        "2024-02-03T09:30:00"
    )
    with pytest.raises(PullError, match="'2024-02-30 10:00:00' is not a timestamp"):
        api_rows._time({"t": "2024-02-30 10:00:00"}, "t", "x", "%Y-%m-%d %H:%M:%S")
