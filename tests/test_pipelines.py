"""An ordinary account with two pipelines of its own (issue 21, "Done when"): the build stops
at the shipped steps, `funnel steps --write --calls call,meeting` writes the account's, and
rep_pipeline_funnel_monthly then equals a plain-Python count over the CSVs, each pipeline
apart, with the account's own names.

The account's CSVs are written here as `funnel pull` writes them (stages with their
pipeline). Its lost reasons are option ids: free-text reasons are funnel pull's side of
issue 21 and are not read here.
"""

from __future__ import annotations

import csv
import json
import random
import re
from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from funnel.cli import app
from funnel.outputs import query
from funnel.project.config import load_config

from .conftest import new_project
from .test_cli import error_line

SCHEMA = "public_pipedrive_analytics"
# (stage_id, name, pipeline_id, pipeline_name, order_nr, probability): ids out of order_nr order.
STAGES = [
    (11, "Qualified", 1, "New Business", 1, 10),
    (13, "Contact Made", 1, "New Business", 2, 20),
    (12, "Demo Scheduled", 1, "New Business", 3, 40),
    (14, "Proposal Made", 1, "New Business", 4, 60),
    (15, "Negotiations Started", 1, "New Business", 5, 80),
    (21, "Up for Renewal", 2, "Renewals", 1, 50),
    (22, "Renewal Call Booked", 2, "Renewals", 2, 70),
    (23, "Renewed", 2, "Renewals", 3, 100),
]
TYPES = [(1, "Call", "call"), (2, "Meeting", "meeting"), (3, "Task", "task"), (4, "Email", "email")]
DEALS = 80


def write_account(folder: Path) -> None:
    """A deterministic account: deals walk their pipeline's stages in order with skips, some
    stop, some are lost, some move on to the renewals pipeline, a few start a second lifecycle."""
    rng = random.Random(21)
    folder.mkdir(parents=True)
    stages_by_pipeline: dict[int, list[int]] = defaultdict(list)
    for stage in sorted(STAGES, key=lambda s: (s[2], s[4])):
        stages_by_pipeline[stage[2]].append(stage[0])
    changes, activities = [], []
    start = datetime(2024, 1, 3, 9, 0, 0)
    for deal in range(1001, 1001 + DEALS):
        at = start + timedelta(days=rng.randrange(0, 200), minutes=rng.randrange(0, 1440))
        changes.append((deal, at, "add_time", at.strftime("%Y-%m-%dT%H:%M:%S")))
        changes.append((deal, at, "user_id", str(rng.randrange(1, 6))))
        pipelines = [1, 2] if rng.random() < 0.3 else [rng.choice([1, 2])]
        lifecycles = 2 if rng.random() < 0.1 else 1
        for _ in range(lifecycles):
            for pipeline in pipelines:
                for stage in stages_by_pipeline[pipeline]:
                    if rng.random() < 0.2:
                        continue  # skipped
                    at += timedelta(days=rng.randrange(1, 40), hours=rng.randrange(0, 24))
                    changes.append((deal, at, "stage_id", str(stage)))
                    if rng.random() < 0.15:
                        break  # stops here
            if rng.random() < 0.3:
                at += timedelta(days=rng.randrange(1, 10))
                changes.append((deal, at, "lost_reason", str(rng.randrange(1, 6))))
            at += timedelta(days=rng.randrange(20, 60))
            if lifecycles == 2:
                changes.append((deal, at, "add_time", at.strftime("%Y-%m-%dT%H:%M:%S")))
        for _ in range(rng.randrange(0, 5)):
            due = start + timedelta(days=rng.randrange(0, 260), minutes=rng.randrange(0, 1440))
            activities.append((deal, rng.choice(TYPES)[2], rng.random() < 0.7, due))
    for deal in range(9001, 9006):  # activities of deals the export has no changes for
        activities.append((deal, "call", True, start + timedelta(days=deal - 9000)))
    _write(
        folder / "stages.csv", ["stage_id", "stage_name", "pipeline_id", "pipeline_name", "order_nr", "deal_probability"], STAGES
    )
    _write(folder / "activity_types.csv", ["id", "name", "active", "type"], [(i, n, "Yes", t) for i, n, t in TYPES])
    _write(
        folder / "deal_changes.csv",
        ["deal_id", "change_time", "changed_field_key", "new_value"],
        [(d, t.strftime("%Y-%m-%d %H:%M:%S"), k, v) for d, t, k, v in changes],
    )
    _write(
        folder / "activity.csv",
        ["activity_id", "type", "assigned_to_user", "deal_id", "done", "due_to"],
        [
            (50_000 + i, t, 1 + i % 5, d, str(done), due.strftime("%Y-%m-%dT%H:%M:%S"))
            for i, (d, t, done, due) in enumerate(activities)
        ],
    )
    options = '[{"id": 1, "label": "Too expensive"}, {"id": 2, "label": "Went quiet"}, {"id": 3, "label": "Chose a competitor"}, '
    options += '{"id": 4, "label": "No budget"}, {"id": 5, "label": "Bad timing"}]'
    _write(
        folder / "fields.csv",
        ["ID", "FIELD_KEY", "NAME", "FIELD_VALUE_OPTIONS"],
        [
            (12, "add_time", "Deal created", ""),
            (9, "user_id", "Owner", ""),
            (4, "stage_id", "Stage", ""),
            (31, "lost_reason", "Lost reason", options),
        ],
    )
    users = [(i, f"Rep {i}", f"rep{i}@example.com", "2024-01-01 00:00:00.000000") for i in range(1, 6)]
    _write(folder / "users.csv", ["id", "name", "email", "modified"], users)


def _write(path: Path, header: list[str], rows: list[tuple]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def expected_funnel(folder: Path, calls: list[str]) -> set[tuple]:
    """The per-pipeline funnel counted in plain Python over the CSVs: (pipeline, month,
    kpi_name, funnel_step, deals_count). A stage step counts each deal in the month of its
    first ever entry into the stage; a call step distinct deals with a done activity of its
    type per month of its due date, of the deals that ever entered a stage of the pipeline."""
    with (folder / "stages.csv").open(newline="") as f:
        stages = list(csv.DictReader(f))
    with (folder / "activity_types.csv").open(newline="") as f:
        type_names = {row["type"]: row["name"] for row in csv.DictReader(f)}
    first_entry: dict[tuple[str, str], str] = {}
    with (folder / "deal_changes.csv").open(newline="") as f:
        for row in csv.DictReader(f):
            if row["changed_field_key"] == "stage_id":
                key = (row["deal_id"], row["new_value"])
                first_entry[key] = min(first_entry.get(key, row["change_time"]), row["change_time"])
    with (folder / "activity.csv").open(newline="") as f:
        done = [row for row in csv.DictReader(f) if row["done"] == "True"]

    counts: dict[tuple, set[str]] = defaultdict(set)
    pipelines = sorted({(int(s["pipeline_id"]), s["pipeline_name"]) for s in stages})
    for _, pipeline in pipelines:
        ordered = sorted((s for s in stages if s["pipeline_name"] == pipeline), key=lambda s: int(s["order_nr"]))
        deals_of_pipeline = {deal for (deal, stage) in first_entry if stage in {s["stage_id"] for s in ordered}}
        for number, stage in enumerate(ordered, start=1):
            name = (pipeline, f"Step {number}: {stage['stage_name']}", f"{number}.0")
            for (deal, stage_id), at in first_entry.items():
                if stage_id == stage["stage_id"]:
                    counts[(name, at[:7] + "-01")].add(deal)
        for k, call in enumerate(calls):
            name = (pipeline, f"Step {k + 2}.1: {type_names[call]}", f"{k + 2}.1")
            for row in done:
                if row["type"] == call and row["deal_id"] in deals_of_pipeline:
                    counts[(name, row["due_to"][:7] + "-01")].add(row["deal_id"])
    return {(p, month, kpi, step, len(deals)) for ((p, kpi, step), month), deals in counts.items()}


def report_rows(root: Path, model: str) -> list[tuple]:
    with duckdb.connect(str(root / "target" / "dev.duckdb"), read_only=True) as con:
        return con.execute(f"select * from {SCHEMA}.{model}").fetchall()


@pytest.fixture
def account(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    export = tmp_path / "account"
    write_account(export)
    return new_project(tmp_path / "project", monkeypatch, export)


def test_an_account_of_its_own_from_the_steps_mismatch_to_its_funnel(account, runner):
    # The shipped steps are another company's: the build stops and says how to go on.
    stopped = runner.invoke(app, ["build"])
    assert stopped.exit_code == 1
    assert "funnel_steps_match_the_export (10 rows)" in stopped.stderr.strip().splitlines()[-1]
    assert "1.0 | Step 1: Lead Generation | 1 |  |  | no such stage: funnel steps --write" in stopped.stderr
    assert "3.1 | Step 3.1: Sales Call 2 |  |  | sc_2 | no such type: funnel steps --write" in stopped.stderr

    written = runner.invoke(app, ["steps", "--write", "--calls", "call,meeting"])
    assert written.exit_code == 0, written.output
    built = runner.invoke(app, ["build"])
    assert built.exit_code == 0, built.output
    assert built.stderr.strip().splitlines()[-1].endswith("ERROR=0")

    # Every pipeline apart, with the account's names, as counted in plain Python.
    rows = report_rows(account, "rep_pipeline_funnel_monthly")
    found = {(p, m.isoformat(), kpi, f"{step:.1f}", n) for p, m, kpi, step, n in rows}
    expected = expected_funnel(account / "raw_data", ["call", "meeting"])
    assert found == expected
    assert {row[0] for row in rows} == {"New Business", "Renewals"}
    assert {kpi for _, _, kpi, _, _ in found} == {
        "Step 1: Qualified", "Step 2: Contact Made", "Step 2.1: Call", "Step 3: Demo Scheduled", "Step 3.1: Meeting",
        "Step 4: Proposal Made", "Step 5: Negotiations Started",
        "Step 1: Up for Renewal", "Step 2: Renewal Call Booked", "Step 3: Renewed",
    }  # fmt: skip

    # rep_sales_funnel_monthly is the first pipeline's unless the var pipeline names another.
    def of(pipeline: str) -> set[tuple]:
        return {row[1:] for row in rows if row[0] == pipeline}

    assert set(report_rows(account, "rep_sales_funnel_monthly")) == of("New Business")
    other = runner.invoke(app, ["build", "--var", "pipeline=Renewals"])
    assert other.exit_code == 0, other.output
    assert set(report_rows(account, "rep_sales_funnel_monthly")) == of("Renewals")
    assert set(report_rows(account, "rep_pipeline_funnel_monthly")) == set(rows)


def test_a_pipeline_the_steps_do_not_name_is_an_error(account, runner):
    # Typed with --var, a usage error (exit 2) as an unknown --pipeline of show is; set in
    # environments.toml, a config error naming the file and table (exit 1). Both list the
    # seed's pipelines and name a near miss.
    assert runner.invoke(app, ["steps", "--write"]).exit_code == 0
    seed = account / "sql" / "seeds" / "funnel_steps.csv"
    said = (
        f"pipeline = 'Renewal' is not a pipeline of {seed} (its pipelines: 'New Business', 'Renewals'); "
        "funnel steps --write writes them from stages.csv. Did you mean 'Renewals'?"
    )
    typed = runner.invoke(app, ["build", "--var", "pipeline=Renewal"])
    assert typed.exit_code == 2
    assert error_line(typed) == f"Error: Invalid value for '--var': {said}"
    config = account / "environments.toml"
    config.write_text(config.read_text(encoding="utf-8") + '\n[dev.vars]\npipeline = "Renewal"\n', encoding="utf-8")
    configured = runner.invoke(app, ["build"])
    assert configured.exit_code == 1
    assert configured.stderr.strip().splitlines()[-1] == f"Error: {config}: [dev.vars] {said}"
    assert not (account / "target" / "dev.duckdb").exists()


def test_three_deals_in_two_pipelines_by_hand(tmp_path, monkeypatch, runner):
    """Pipeline A: stages 1 then 2; pipeline B: stage 3 only (so no call step: it has no step 2).
    Deal 1 enters 1 (Jan), 2 (Feb), 1 again (Mar: not counted again), a done call in Feb.
    Deal 2 enters 1 (Jan), then B's 3 (Feb); its March call is not done. Deal 3 enters 3 (Feb)
    and has a done call in Feb, as has deal 4, which has no stage at all."""
    export = tmp_path / "tiny"
    export.mkdir()
    files = {
        "stages.csv": "stage_id,stage_name,pipeline_id,pipeline_name,order_nr,deal_probability\n"
        "1,Intro,1,A,1,\n2,Pitch,1,A,2,\n3,Kickoff,2,B,1,\n",
        "activity_types.csv": "id,name,active,type\n1,Call,Yes,call\n2,Meeting,Yes,meeting\n",
        "deal_changes.csv": "deal_id,change_time,changed_field_key,new_value\n"
        "1,2024-01-05 10:00:00,stage_id,1\n1,2024-02-03 10:00:00,stage_id,2\n1,2024-03-01 10:00:00,stage_id,1\n"
        "2,2024-01-20 10:00:00,stage_id,1\n2,2024-02-10 10:00:00,stage_id,3\n"
        "3,2024-02-15 10:00:00,stage_id,3\n",
        "activity.csv": "activity_id,type,assigned_to_user,deal_id,done,due_to\n"
        "11,call,1,1,True,2024-02-10T09:00:00\n12,call,1,3,True,2024-02-20T09:00:00\n"
        "13,call,1,4,True,2024-02-21T09:00:00\n14,call,1,2,False,2024-03-05T09:00:00\n",
        "fields.csv": "ID,FIELD_KEY,NAME,FIELD_VALUE_OPTIONS\n4,stage_id,Stage,\n",
        "users.csv": "id,name,email,modified\n1,Ann,ann@example.com,2024-01-01 00:00:00.000000\n",
    }
    for name, text in files.items():
        (export / name).write_text(text)
    project = new_project(tmp_path / "project", monkeypatch, export)
    assert runner.invoke(app, ["steps", "--write", "--calls", "call"]).exit_code == 0
    result = runner.invoke(app, ["build"])
    assert result.exit_code == 0, result.output
    rows = {
        (p, m.isoformat(), kpi, f"{step:.1f}", n) for p, m, kpi, step, n in report_rows(project, "rep_pipeline_funnel_monthly")
    }
    assert rows == {
        ("A", "2024-01-01", "Step 1: Intro", "1.0", 2),  # deals 1 and 2
        ("A", "2024-02-01", "Step 2: Pitch", "2.0", 1),  # deal 1
        ("A", "2024-02-01", "Step 2.1: Call", "2.1", 1),  # deal 1; deal 3 is B's, deal 4 no pipeline's
        ("B", "2024-02-01", "Step 1: Kickoff", "1.0", 2),  # deals 2 and 3
    }
    assert {(m.isoformat(), kpi, n) for m, kpi, _, n in report_rows(project, "rep_sales_funnel_monthly")} == {
        ("2024-01-01", "Step 1: Intro", 2), ("2024-02-01", "Step 2: Pitch", 1), ("2024-02-01", "Step 2.1: Call", 1),
    }  # fmt: skip
    # The analyses count pipeline A's deals (1 and 2): its conversion 1 -> 2 in January.
    with duckdb.connect(str(project / "target" / "dev.duckdb"), read_only=True) as con:
        conversion = con.execute(f"select cohort_month, entered, converted from {SCHEMA}.rep_stage_conversion").fetchall()
    assert [(m.isoformat(), e, c) for m, e, c in conversion] == [("2024-01-01", 2, 1)]


def test_show_prints_each_pipelines_funnel_and_picks_one(account, runner):
    # Issue 21: with two pipelines, funnel show --month gives both pipelines' rows of
    # rep_pipeline_funnel_monthly, with a pipeline column; --pipeline keeps one.
    assert runner.invoke(app, ["steps", "--write", "--calls", "call,meeting"]).exit_code == 0
    assert runner.invoke(app, ["build"]).exit_code == 0
    rows = report_rows(account, "rep_pipeline_funnel_monthly")
    months = defaultdict(set)
    for pipeline, month, *_ in rows:
        months[month].add(pipeline)
    month = max(m for m, found in months.items() if len(found) == 2)
    of_month = {(p, m.isoformat(), kpi, f"{step:.1f}", str(n)) for p, m, kpi, step, n in rows if m == month}

    def shown(*options: str) -> set[tuple]:
        result = runner.invoke(app, ["show", "--month", month.strftime("%Y-%m"), "--format", "csv", *options])
        assert result.exit_code == 0, result.output
        lines = list(csv.reader(result.stdout.splitlines()))
        assert lines[0] == ["pipeline", "month", "kpi_name", "funnel_step", "deals_count"]
        return {(p, m, kpi, f"{float(step):.1f}", n) for p, m, kpi, step, n in lines[1:]}

    assert shown() == of_month
    assert shown("--pipeline", "Renewals") == {row for row in of_month if row[0] == "Renewals"}

    table = runner.invoke(app, ["show", "--month", month.strftime("%Y-%m")])
    assert table.exit_code == 0, table.output
    assert "New Business" in table.stdout and "Renewals" in table.stdout

    wrong = runner.invoke(app, ["show", "--pipeline", "Renewal"])
    assert wrong.exit_code == 2
    assert "no pipeline 'Renewal' in the build" in wrong.stderr and "Did you mean 'Renewals'?" in wrong.stderr


def _funnel_figures(text: str) -> dict[tuple[str, str], dict[str, int]]:
    """(pipeline, month) -> {stage step name: deals} of the funnel charts in the report's
    funnel section, each read from the figure JSON beside its chart."""
    start = text.index('<section id="funnel">')
    section = text[start : text.index("</section>", start)]
    found = {}
    for month_block in section.split('<div class="per-month" data-month="')[1:]:
        month = month_block[:7]
        for block in month_block.split('<div class="per-pipeline" data-pipeline="')[1:]:
            pipeline = block[: block.index('"')]
            figure = re.search(r'<script type="application/json" id="[^"]*-figure">(.*?)</script>', block, re.S)
            assert figure, (pipeline, month)
            trace = json.loads(figure.group(1))["data"][0]
            assert trace["type"] == "funnel"
            found[(pipeline, month)] = {name: count for name, count in zip(trace["y"], trace["x"], strict=True) if count}
    return found


def test_the_report_draws_each_pipelines_funnel(account, runner):
    # Issue 21: the pipeline picker shows that pipeline's funnel: the funnel chart of each
    # month and pipeline draws rep_pipeline_funnel_monthly's counts of its stage steps.
    assert runner.invoke(app, ["steps", "--write", "--calls", "call,meeting"]).exit_code == 0
    assert runner.invoke(app, ["build"]).exit_code == 0
    result = runner.invoke(app, ["report", "--out", "r.html"])
    assert result.exit_code == 0, result.output
    text = (account / "r.html").read_text(encoding="utf-8")
    with duckdb.connect(str(account / "target" / "dev.duckdb"), read_only=True) as con:
        rows = con.execute(
            f"""
            select f.pipeline, strftime(f.month, '%Y-%m'), f.kpi_name, f.deals_count
            from {SCHEMA}.rep_pipeline_funnel_monthly as f
            inner join {SCHEMA}.funnel_steps as s on f.pipeline = s.pipeline and f.funnel_step = s.funnel_step
            where s.stage_id is not null and f.deals_count > 0
            """
        ).fetchall()
        months = [
            m
            for (m,) in con.execute(
                f"""
                select strftime(month, '%Y-%m') from {SCHEMA}.rep_sales_funnel_monthly
                union
                select strftime(month, '%Y-%m') from {SCHEMA}.rep_pipeline_funnel_monthly
                """
            ).fetchall()
        ]
    # The report's months are every pipeline's: a pipeline with no deal in one draws zeros.
    expected: dict[tuple[str, str], dict[str, int]] = {(p, m): {} for p in ("New Business", "Renewals") for m in months}
    for pipeline, month, name, count in rows:
        expected[(pipeline, month)][name] = count
    assert _funnel_figures(text) == expected
    assert any(found for (p, _), found in expected.items() if p == "Renewals")


def test_the_report_opens_on_the_pipeline_the_analyses_count(account, runner):
    # The var pipeline comes first in the picker, whatever has the most deals: the page then
    # opens on one pipeline in the funnel and in the analyses, which count the var's.
    assert runner.invoke(app, ["steps", "--write", "--calls", "call,meeting"]).exit_code == 0
    for counted in ("Renewals", "New Business"):
        assert runner.invoke(app, ["build", "--var", f"pipeline={counted}"]).exit_code == 0
        result = runner.invoke(app, ["report", "--out", "r.html"])
        assert result.exit_code == 0, result.output
        text = (account / "r.html").read_text(encoding="utf-8")
        picker = text[text.index('<select id="pipeline-picker">') :].split("</select>", 1)[0]
        assert re.findall(r'<option value="([^"]*)"', picker)[0] == counted
        assert f"Counted for the pipeline {counted} only" in text


def test_the_summary_and_show_name_the_pipeline_they_count(account, runner):
    # The steps of two pipelines share their numbers (1.0, 2.0, ...): the summary's
    # conversion and days in step are the counted pipeline's, under that pipeline's names
    # only (it listed Renewals' steps too, each beside New Business's figures), and every
    # table of a model that counts one pipeline says which.
    assert runner.invoke(app, ["steps", "--write", "--calls", "call,meeting"]).exit_code == 0
    env = load_config(account).environment("dev")
    for counted in ("New Business", "Renewals"):
        assert runner.invoke(app, ["build", "--var", f"pipeline={counted}"]).exit_code == 0
        with duckdb.connect(str(account / "target" / "dev.duckdb"), read_only=True) as con:
            steps = con.execute(
                f"select funnel_step, kpi_name from {SCHEMA}.funnel_steps where pipeline = ? and stage_id is not null order by 1",
                [counted],
            ).fetchall()
            month = con.execute(f"select strftime(max(cohort_month), '%Y-%m') from {SCHEMA}.rep_stage_conversion").fetchone()[0]
            conversion = dict(
                con.execute(
                    f"select from_step, entered from {SCHEMA}.rep_stage_conversion where strftime(cohort_month, '%Y-%m') = ?",
                    [month],
                ).fetchall()
            )
            days = dict(con.execute(f"select funnel_step, median_days from {SCHEMA}.rep_stage_velocity").fetchall())
        summary = query.summary(env, month)
        assert [(r[0], r[1]) for r in summary.stages.rows] == steps
        assert [r[2] for r in summary.stages.rows] == [conversion.get(s) for s, _ in steps]
        assert [r[6] for r in summary.stages.rows] == [days.get(s) for s, _ in steps]
        for table in (summary.funnel, summary.stages, summary.lost_reasons):
            assert f" · {counted} · {month}" in table.title, table.title
        assert query.show(env, "rep_stage_velocity").title.startswith(f"rep_stage_velocity · dev · {counted}")
        assert query.show(env, "rep_win_rate_monthly").title == "rep_win_rate_monthly · dev"  # a column per row
        status = runner.invoke(app, ["status"]).stdout
        assert f"pipeline     {counted}: counted alone by rep_sales_funnel_monthly," in status
        assert "definitions  the defaults\n" in status  # the pipeline is not a counting rule


def test_a_pipeline_without_deals_lends_no_step_names_to_the_report(account, runner):
    # A seed of two pipelines where only New Business has deals (a Renewals pipeline just
    # set up): the page draws rep_sales_funnel_monthly alone, with New Business's steps; it
    # listed Renewals' steps too, at the same numbers, under New Business's counts.
    changes = account / "raw_data" / "deal_changes.csv"
    with changes.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    renewals = {str(s[0]) for s in STAGES if s[3] == "Renewals"}
    kept = [r for r in rows if not (r[2] == "stage_id" and r[3] in renewals)]
    assert len(kept) < len(rows)
    with changes.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f, lineterminator="\n").writerows(kept)
    assert runner.invoke(app, ["steps", "--write", "--calls", "call,meeting"]).exit_code == 0
    assert runner.invoke(app, ["build"]).exit_code == 0
    result = runner.invoke(app, ["report", "--out", "r.html"])
    assert result.exit_code == 0, result.output
    text = (account / "r.html").read_text(encoding="utf-8")
    assert '<select id="pipeline-picker">' not in text
    with duckdb.connect(str(account / "target" / "dev.duckdb"), read_only=True) as con:
        steps = [
            n
            for (n,) in con.execute(
                f"select kpi_name from {SCHEMA}.funnel_steps where pipeline = 'New Business' order by funnel_step"
            ).fetchall()
        ]
    section = text[text.index('<section id="funnel">') :].split("</section>", 1)[0]
    figures = re.findall(r'<script type="application/json" id="[^"]*-figure">(.*?)</script>', section, re.S)
    drawn = {name for f in figures for trace in json.loads(f)["data"] for name in trace.get("y", []) if isinstance(name, str)}
    assert drawn and drawn <= set(steps)
    assert not [name for name in drawn if "Renew" in name]  # Renewals' steps: Up for Renewal, Renewed, ...


def test_summary_refuses_a_pipeline_it_would_not_count(account, runner):
    # --summary counts the var pipeline: a --pipeline beside it was ignored, and Renewals'
    # summary came out as New Business's, exit 0.
    assert runner.invoke(app, ["steps", "--write", "--calls", "call,meeting"]).exit_code == 0
    assert runner.invoke(app, ["build"]).exit_code == 0
    refused = runner.invoke(app, ["show", "--summary", "--pipeline", "Renewals"])
    assert refused.exit_code == 2
    assert "--summary counts the pipeline the build counts (New Business)" in refused.stderr
    assert "--var 'pipeline=Renewals'" in refused.stderr
    assert refused.stdout == ""


@pytest.mark.postgres
def test_exported_tables_say_which_pipeline_they_count(account, runner):
    # A table in PostgreSQL is read without funnel's titles: its comment names the pipeline
    # of a model that counts one (rep_stage_velocity of New Business reads like every deal's).
    from .test_export import _SKIP, PG, side_schemas

    if _SKIP:
        pytest.skip(_SKIP)
    import secrets

    import psycopg

    name = f"funnel_test_{secrets.token_hex(4)}"
    text = (account / "environments.toml").read_text(encoding="utf-8").replace('"public_pipedrive_analytics"', f'"{name}"')
    text += f'[dev.postgres]\nhost = "{PG["host"]}"\nport = {PG["port"]}\nuser = "{PG["user"]}"\ndbname = "{PG["dbname"]}"\n'
    (account / "environments.toml").write_text(text)
    assert runner.invoke(app, ["steps", "--write", "--calls", "call,meeting"]).exit_code == 0
    query = "select obj_description(%s::regclass, 'pg_class')"
    with psycopg.connect(**PG, autocommit=True) as pg:  # type: ignore[arg-type]
        try:
            for counted in ("Renewals", "New Business"):
                assert runner.invoke(app, ["build", "--var", f"pipeline={counted}"]).exit_code == 0
                exported = runner.invoke(app, ["export"])
                assert exported.exit_code == 0, exported.output
                for table in ("rep_sales_funnel_monthly", "rep_stage_velocity", "rep_lost_reasons_monthly"):
                    assert pg.execute(query, [f'"{name}".{table}']).fetchone() == (
                        f"funnel: built with the default definitions; counts the pipeline {counted} only",
                    ), table
                for table in ("rep_pipeline_funnel_monthly", "rep_win_rate_monthly"):  # a pipeline column
                    assert pg.execute(query, [f'"{name}".{table}']).fetchone() == ("funnel: built with the default definitions",)
        finally:
            pg.execute(f'drop schema if exists "{name}" cascade')
            for side in side_schemas(pg, name):
                pg.execute(f'drop schema "{side}" cascade')


def test_a_step_of_another_pipeline_stops_the_build(account, runner):
    # Renewals renamed in Pipedrive after funnel steps --write: the seed's Renewals steps now
    # name stages of 'Renewals 2025'. funnel steps said "pipeline differs", but the build
    # passed: the funnel said Renewals, the deal models Renewals 2025, exit 0.
    assert runner.invoke(app, ["steps", "--write", "--calls", "call,meeting"]).exit_code == 0
    stages = account / "raw_data" / "stages.csv"
    stages.write_text(stages.read_text(encoding="utf-8").replace(",Renewals,", ",Renewals 2025,"), encoding="utf-8")
    stopped = runner.invoke(app, ["build"])
    assert stopped.exit_code == 1, stopped.output
    assert "funnel_steps_match_the_export (3 rows)" in stopped.stderr.strip().splitlines()[-1]
    assert "1.0 | Step 1: Up for Renewal | 21 | Up for Renewal |  | pipeline differs: funnel steps --write" in stopped.stderr
    assert runner.invoke(app, ["steps", "--write", "--calls", "call,meeting"]).exit_code == 0
    assert runner.invoke(app, ["build"]).exit_code == 0


def test_two_pipelines_of_one_name_stop_the_build(account, runner):
    # Pipedrive lets two pipelines share a name. A seed that names the pipeline counted
    # Renewals' stages as steps 6-8 of New Business, so step 5 of one "converted" to step 6
    # of the other, and the build passed, exit 0: every step's name matched its stage.
    assert runner.invoke(app, ["steps", "--write", "--calls", "call,meeting"]).exit_code == 0
    stages = account / "raw_data" / "stages.csv"
    stages.write_text(stages.read_text(encoding="utf-8").replace(",Renewals,", ",New Business,"), encoding="utf-8")
    seed = account / "sql" / "seeds" / "funnel_steps.csv"
    new_business = [row for row in seed.read_text(encoding="utf-8").splitlines() if row.endswith(",New Business")]
    renewals = [f"{6 + i}.0,Step {6 + i}: {name},{stage},,New Business" for i, (stage, name, *_) in enumerate(STAGES[5:])]
    seed.write_text("\n".join(["funnel_step,kpi_name,stage_id,activity_type,pipeline", *new_business, *renewals]) + "\n")
    stopped = runner.invoke(app, ["build"])
    assert stopped.exit_code == 1, stopped.output
    assert "funnel_steps_match_the_export (8 rows)" in stopped.stderr.strip().splitlines()[-1]  # every stage step
    assert "1.0 | Step 1: Qualified | 11 | Qualified |  | two pipelines of this name: rename one" in stopped.stderr
    assert "pipelines 1, 2 are all named 'New Business'" in runner.invoke(app, ["steps"]).stderr


def test_compare_keeps_pipelines_and_owners_apart(account, runner):
    # --compare joined on month and funnel_step alone: rep_pipeline_funnel_monthly's two
    # pipelines (and rep_owner_funnel_monthly's owners) were crossed, each count beside the
    # other pipeline's, and rep_sales_funnel_monthly of New Business in dev was put beside
    # Renewals' in prod under New Business's names, exit 0.
    assert runner.invoke(app, ["steps", "--write", "--calls", "call,meeting"]).exit_code == 0
    assert runner.invoke(app, ["build"]).exit_code == 0
    assert runner.invoke(app, ["build", "--env", "prod", "--var", "pipeline=Renewals"]).exit_code == 0
    crossed = runner.invoke(app, ["show", "--compare", "prod", "-f", "csv"])
    assert crossed.exit_code == 1 and crossed.stdout == ""
    assert crossed.stderr.strip().splitlines() == [
        "Error: rep_sales_funnel_monthly counts the pipeline 'New Business' in env 'dev' and the pipeline 'Renewals' "
        "in env 'prod': another pipeline's steps share its step numbers; build both with the same --var "
        "pipeline=NAME, or compare every pipeline with --model rep_pipeline_funnel_monthly."
    ]

    def compared(model: str) -> list[list[str]]:
        shown = runner.invoke(app, ["show", "--model", model, "--compare", "prod", "-f", "csv"])
        assert shown.exit_code == 0, shown.output
        rows = list(csv.reader(shown.stdout.splitlines()))
        assert len(rows) - 1 == len(report_rows(account, model))  # one row each, none crossed
        assert all(r[-3] == r[-2] and r[-1] == "0" for r in rows[1:])
        return rows

    assert {r[0] for r in compared("rep_pipeline_funnel_monthly")[1:]} == {"New Business", "Renewals"}
    assert runner.invoke(app, ["build", "--env", "prod", "--var", "pipeline=New Business"]).exit_code == 0
    assert compared("rep_owner_funnel_monthly")[0][:5] == ["month", "owner_id", "owner_name", "kpi_name", "funnel_step"]
    same = query.compare(*(load_config(account).environment(e) for e in ("dev", "prod")))
    assert same.title == "rep_sales_funnel_monthly · dev vs prod · New Business"
    assert same.rows and all(row[-1] == 0 for row in same.rows)


def test_exported_files_say_which_pipeline_they_count(account, runner, tmp_path):
    # A file is read without funnel's titles: rep_stage_velocity.csv of Renewals came with
    # no word of it (no _funnel_definitions.csv: the definitions were the defaults), and read
    # like every deal's; PostgreSQL's comments said it, the files did not.
    assert runner.invoke(app, ["steps", "--write", "--calls", "call,meeting"]).exit_code == 0
    out = tmp_path / "out"
    for counted in ("Renewals", "New Business"):
        assert runner.invoke(app, ["build", "--var", f"pipeline={counted}"]).exit_code == 0
        for fmt in ("csv", "parquet"):
            assert runner.invoke(app, ["export", "-f", fmt, "--out", str(out)]).exit_code == 0
            with duckdb.connect() as con:
                rows = con.execute(f"select * from '{out / f'_funnel_definitions.{fmt}'}'").fetchall()
            assert rows == [("pipeline", counted)]
    # Only models of every pipeline: nothing to say.
    every = ["export", "-f", "csv", "--out", str(out), "--select", "rep_pipeline_funnel_monthly"]
    assert runner.invoke(app, every).exit_code == 0
    assert not (out / "_funnel_definitions.csv").exists()


def test_show_as_data_says_which_pipeline_it_counts(account, runner):
    # The terminal's title names the pipeline of a model of one pipeline; -f csv and json
    # have no title, and said nothing (the definitions go to stderr, the pipeline did not).
    assert runner.invoke(app, ["steps", "--write", "--calls", "call,meeting"]).exit_code == 0
    assert runner.invoke(app, ["build", "--var", "pipeline=Renewals"]).exit_code == 0
    assert runner.invoke(app, ["build", "--env", "prod", "--var", "pipeline=Renewals"]).exit_code == 0
    for args in (["--model", "rep_stage_velocity"], ["--model", "rep_sales_funnel_monthly", "--compare", "prod"]):
        for fmt in ("csv", "json"):
            shown = runner.invoke(app, ["show", *args, "-f", fmt])
            assert shown.exit_code == 0, shown.output
            assert shown.stderr.strip().splitlines() == ["counts the pipeline Renewals only"]
            assert "Renewals" not in shown.stdout
    every = runner.invoke(app, ["show", "--model", "rep_pipeline_funnel_monthly", "-f", "csv"])
    assert every.exit_code == 0 and every.stderr == ""


@pytest.mark.parametrize(
    ("old", "new", "said"),
    [
        (",Renewals,", ",New Business,", "pipelines 1, 2 are all named 'New Business'; rename one in Pipedrive and pull again."),
        (
            "23,Renewed,2,Renewals,",
            "23,Renewed,2,Renewal,",
            "the stages of pipeline 2 name it 'Renewal', 'Renewals'; give them one name.",
        ),
    ],
    ids=["two-pipelines-one-name", "one-pipeline-two-names"],
)
def test_steps_name_the_pipelines_it_cannot_tell_apart(account, runner, old, new, said):
    # The refusal said "two pipelines have the same name", naming neither, also when one
    # pipeline's stages gave it two names (no two pipelines shared one).
    stages = account / "raw_data" / "stages.csv"
    stages.write_text(stages.read_text(encoding="utf-8").replace(old, new), encoding="utf-8")
    refused = runner.invoke(app, ["steps", "--write"])
    assert refused.exit_code == 1
    assert refused.stderr.strip().splitlines() == [f"Error: stages.csv: {said}"]
