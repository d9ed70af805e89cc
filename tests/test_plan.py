"""The plan: only what changed is reloaded and rerun, the published build is always one
export's, and nothing changed means nothing written."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

import duckdb
import pytest

from funnel.build import record
from funnel.build.plan import Previous, fingerprint, make
from funnel.build.runner import build, make_plan
from funnel.cli import app
from funnel.pipedrive.sample import generate

from .conftest import compiled, read_report


def edit(project: Path, model: str, text: str = "\n-- edited\n") -> None:
    path = next((project / "sql").rglob(f"{model}.sql"))
    path.write_text(path.read_text() + text)


def tables(database: Path) -> dict[str, int]:
    with duckdb.connect(str(database), read_only=True) as con:
        return dict(con.execute("select schema_name || '.' || table_name, estimated_size from duckdb_tables()").fetchall())


@pytest.fixture
def other_export(tmp_path: Path) -> Path:
    folder = tmp_path / "export_b"
    generate(folder, deals=80, seed=21)
    return folder


def full_build_of(project: Path, export: Path, tmp_path: Path, runner) -> list[tuple]:
    """The report a fresh, full build of `export` publishes (in a copy of the project)."""
    clean = tmp_path / "clean"
    shutil.copytree(project / "sql", clean / "sql")
    shutil.copy(project / "environments.toml", clean / "environments.toml")
    old = Path.cwd()
    os.chdir(clean)
    try:
        result = runner.invoke(app, ["build", "--raw-data", str(export)])
        assert result.exit_code == 0, result.output
    finally:
        os.chdir(old)
    return read_report(clean / "target" / "dev.duckdb")


def test_nothing_changed_is_up_to_date_and_writes_nothing(built, runner):
    database = built / "target" / "dev.duckdb"
    before = (database.stat().st_mtime_ns, database.stat().st_ino, database.read_bytes())
    result = runner.invoke(app, ["build"])
    assert result.exit_code == 0
    assert "env dev is up to date" in result.stderr
    first = compiled(built)
    with duckdb.connect(str(database), read_only=True) as con:
        recorded = json.loads(con.execute("select info from _funnel.build_info").fetchone()[0])["tests"]
    assert f"Up to date: env dev, tests PASS={recorded['PASS']} WARN={recorded['WARN']} ERROR=0" in result.stderr
    assert sum(recorded.values()) == len(first.tests)
    assert (database.stat().st_mtime_ns, database.stat().st_ino, database.read_bytes()) == before


def test_an_edited_reporting_model_runs_alone_and_equals_a_full_build(built, runner, tmp_path):
    edit(built, "rep_sales_funnel_monthly", "\n-- a comment changes the SQL, not the result\n")
    result = runner.invoke(app, ["build"])
    assert result.exit_code == 0, result.output
    assert "run   model  rep_sales_funnel_monthly                 SQL changed" in result.stderr
    manifest = compiled(built)
    ran = 1 + len(manifest.graph.downstream("rep_sales_funnel_monthly"))  # a model reading it (none shipped) runs along
    models = len(manifest.graph.models)
    assert f"loaded 0 of {len(manifest.sources)} sources (0 rows), ran {ran} of {models} models" in result.stderr
    assert "OK    source" not in result.stderr and "int_deal_stage_history" not in result.stderr
    assert read_report(built / "target" / "dev.duckdb") == full_build_of(built, built / "raw_data", tmp_path, runner)


def test_an_edited_intermediate_model_takes_its_downstream_along(built):
    edit(built, "int_deal_stage_history")
    manifest = compiled(built)
    plan = make_plan(manifest)
    downstream = manifest.graph.downstream("int_deal_stage_history")
    assert "rep_sales_funnel_monthly" in downstream
    assert plan.names("model", "run") == [n for n in manifest.graph.order if n in downstream | {"int_deal_stage_history"}]
    reasons = {s.name: s.reason for s in plan.steps if s.kind == "model"}
    assert reasons["rep_sales_funnel_monthly"] == "downstream of rep_pipeline_funnel_monthly"
    assert plan.names("source", "load") == []


def test_select_with_another_export_publishes_only_that_export(built, runner, other_export, tmp_path):
    # Issue: a full build of export A, then `--select stg_activity+` with export B used to
    # publish a report equal to neither.
    result = runner.invoke(app, ["build", "--select", "stg_activity+", "--raw-data", str(other_export)])
    assert result.exit_code == 0, result.output
    assert "(another export)" in result.stderr
    published = read_report(built / "target" / "dev.duckdb")
    assert published == full_build_of(built, other_export, tmp_path, runner)
    with duckdb.connect(str(built / "target" / "dev.duckdb"), read_only=True) as con:
        (info,) = con.execute("select info from _funnel.build_info").fetchone()
        (rows,) = con.execute("select count(*) from pipedrive.deal_changes").fetchone()
    fingerprints = json.loads(info)["fingerprints"]
    assert {Path(fp["path"]).parent for fp in fingerprints.values()} == {other_export}
    assert rows == len((other_export / "deal_changes.csv").read_text().splitlines()) - 1


def test_the_same_export_in_another_folder_is_not_reloaded(built, runner, tmp_path):
    copy = tmp_path / "copied_export"
    shutil.copytree(built / "raw_data", copy)  # new paths, new modification times, same bytes
    result = runner.invoke(app, ["build", "--raw-data", str(copy)])
    assert result.exit_code == 0, result.output
    assert "up to date" in result.stderr


def test_a_changed_source_reloads_it_and_reruns_what_reads_it(built, runner):
    users = built / "raw_data" / "users.csv"
    lines = users.read_text().splitlines(keepends=True)
    users.write_text("".join(lines[:-1]))  # one user fewer
    manifest = compiled(built)
    plan = make_plan(manifest)
    assert plan.names("source", "load") == ["users"]
    readers = {n for n, m in manifest.graph.models.items() if "users" in m.sources}
    assert readers == {"stg_users"}
    reached = readers.union(*(manifest.graph.downstream(n) for n in readers))
    assert plan.names("model", "run") == [n for n in manifest.graph.order if n in reached]
    result = runner.invoke(app, ["build"])
    assert result.exit_code == 0, result.output
    assert f"{len(lines) - 2:,} rows" in result.stderr


def test_full_refresh_and_dry_run(built, runner):
    database = built / "target" / "dev.duckdb"
    before = database.read_bytes()
    dry = runner.invoke(app, ["build", "--dry-run", "--full-refresh"])
    assert dry.exit_code == 0
    m = compiled(built)
    counts = f"load {len(m.sources)} sources, run {len(m.graph.models)} models, test {len(m.tests)} tests"
    assert f"full build (--full-refresh): {counts}" in dry.stderr
    assert "  test  test   deals_count_is_positive" in dry.stderr  # --dry-run lists the tests too
    assert database.read_bytes() == before  # a dry run writes nothing
    result = runner.invoke(app, ["build", "--full-refresh"])
    assert (
        result.exit_code == 0
        and f"{len(m.sources)} sources (" in result.stderr
        and f"{len(m.graph.models)} models" in result.stderr
    )


def test_an_edited_test_reruns_alone(built, runner):
    test = built / "sql" / "tests" / "deals_with_several_add_time.sql"
    test.write_text(test.read_text().replace("count(*) > 1", "count(*) > 0"))
    plan = make_plan(compiled(built))
    assert plan.names("test", "test") == ["deals_with_several_add_time"]
    assert plan.names("model", "run") == [] and plan.names("source", "load") == []
    result = runner.invoke(app, ["build"])
    assert result.exit_code == 0
    deals = {line.split(",")[0] for line in (built / "raw_data" / "deal_changes.csv").read_text().splitlines()[1:]}
    assert f"deals_with_several_add_time: {len(deals):,} rows" in result.stderr  # every deal has an add_time row


@pytest.mark.slow
def test_the_committed_file_does_not_grow_from_one_build_to_the_next(built, runner):
    database = built / "target" / "dev.duckdb"
    sizes = []
    for i in range(4):
        edit(built, "int_deal_stage_history", f"\n-- edit {i}\n")
        assert runner.invoke(app, ["build"]).exit_code == 0
        sizes.append(database.stat().st_size)
    assert sizes[-1] <= sizes[1], sizes


def test_a_failed_incremental_build_leaves_the_last_good_build(built, runner):
    database = built / "target" / "dev.duckdb"
    before = database.read_bytes()
    edit(built, "rep_sales_funnel_monthly", "\nunion all select 'not a date', 'x', 1.0, 1\n")
    result = runner.invoke(app, ["build"])
    assert result.exit_code == 1
    assert database.read_bytes() == before
    assert not list(database.parent.glob(".*.tmp*"))


def test_a_new_model_outside_the_selection_is_still_built(built, runner):
    (built / "sql" / "reporting" / "rep_new.sql").write_text("select count(*) as n from {{ ref('stg_stages') }}")
    result = runner.invoke(app, ["build", "--select", "stg_users"])
    assert result.exit_code == 0, result.output
    assert "rep_new" in tables(built / "target" / "dev.duckdb").__str__()


def test_a_source_fingerprint_reads_the_content_not_the_path(tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_text("id\n1\n")
    b.write_text("id\n1\n")
    assert fingerprint(a).same_content(fingerprint(b))
    b.write_text("id\n2\n")
    assert not fingerprint(a).same_content(fingerprint(b))


def same_length_edit(path: Path) -> None:
    """Move one stage entry of deal_changes.csv to the next month, keeping the file's size,
    and give the file back its modification time, as `touch -r`, `rsync -t`, `cp -p`, an
    unzip or a restore from backup would."""
    stat = path.stat()
    lines = path.read_text().splitlines(keepends=True)
    for i, line in enumerate(lines):
        deal_id, changed_at, key, value = line.rstrip("\n").split(",")
        if key == "stage_id" and changed_at.startswith("2024-0") and changed_at[5:7] < "09" and changed_at[8:10] <= "28":
            month = f"{int(changed_at[5:7]) + 1:02d}"
            lines[i] = f"{deal_id},{changed_at[:5]}{month}{changed_at[7:]},{key},{value}\n"
            break
    else:
        raise AssertionError("no stage entry to move")
    path.write_text("".join(lines))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (stat.st_size, stat.st_mtime_ns)


def test_an_edit_that_keeps_size_and_mtime_is_rebuilt(built, runner, tmp_path):
    # Issue 26.3: the recorded fingerprint stood in for the file when size and mtime
    # matched, so this build said "up to date" and kept the old numbers.
    database = built / "target" / "dev.duckdb"
    before = read_report(database)
    same_length_edit(built / "raw_data" / "deal_changes.csv")
    result = runner.invoke(app, ["build"])
    assert result.exit_code == 0, result.output
    assert "load  source deal_changes                             deal_changes.csv changed" in result.stderr
    after = read_report(database)
    assert after != before
    assert after == full_build_of(built, built / "raw_data", tmp_path, runner)


def test_a_source_fingerprint_is_the_sha256_of_the_whole_file(tmp_path):
    path = tmp_path / "big.csv"
    path.write_bytes(os.urandom(3 << 20) + b"tail")  # several reads
    fp = fingerprint(path)
    assert fp.sha256 == hashlib.sha256(path.read_bytes()).hexdigest() and fp.size == path.stat().st_size
    path.write_bytes(path.read_bytes()[:-4] + b"tayl")  # one byte, far from the start
    os.utime(path, ns=(fp.mtime_ns, fp.mtime_ns))
    assert not fingerprint(path).same_content(fp)
    assert fingerprint(path, previous=fp) is fp  # only a fingerprint this process just took is trusted


def declare(project: Path, old: str, new: str) -> None:
    toml = project / "sql" / "sources.toml"
    assert old in toml.read_text()
    toml.write_text(toml.read_text().replace(old, new) + "\n# a comment changes no declaration\n")


def test_a_changed_column_type_in_sources_toml_reloads_that_source(built, runner):
    # Issue 26.4: edits to sql/sources.toml were ignored: "up to date", the old table kept.
    declare(built, 'stage_id = "BIGINT", stage_name', 'stage_id = "INTEGER", stage_name')
    plan = make_plan(compiled(built))
    assert plan.names("source", "load") == ["stages"]
    assert {s.name: s.reason for s in plan.steps if s.kind == "source"}["stages"] == (
        "its declaration in sql/sources.toml changed"
    )
    result = runner.invoke(app, ["build"])
    assert result.exit_code == 0, result.output
    with duckdb.connect(str(built / "target" / "dev.duckdb"), read_only=True) as con:
        (column_type,) = con.execute(
            "select data_type from information_schema.columns where table_schema = 'pipedrive' "
            "and table_name = 'stages' and column_name = 'stage_id'"
        ).fetchone()
    assert column_type == "INTEGER"


def test_a_changed_timestamp_format_in_sources_toml_reads_the_file_again(built, runner):
    database = built / "target" / "dev.duckdb"
    before = database.read_bytes()
    # The file's timestamps have a space: with a T, every row is refused, as a fresh build would.
    declare(built, 'timestamp_format = "%Y-%m-%d %H:%M:%S"\n', 'timestamp_format = "%Y-%m-%dT%H:%M:%S"\n')
    result = runner.invoke(app, ["build"])
    assert result.exit_code == 1, result.output
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("Error: ") and "deal_changes.csv line 2, column change_time" in line
    assert database.read_bytes() == before


def test_a_source_recorded_by_another_funnel_is_loaded_again(built):
    manifest = compiled(built)
    found = record.committed(manifest.env)
    assert found is not None
    previous = Previous.from_record(found)
    older = {t: replace(fp, funnel_version="0.0.9") for t, fp in previous.sources.items()}
    plan = make(manifest, replace(previous, sources=older))
    assert plan.names("source", "load") == [s.table for s in manifest.sources]
    assert {s.reason for s in plan.steps if s.kind == "source"} == {"loaded by funnel 0.0.9"}


def test_build_records_what_it_was_made_of(built):
    manifest = compiled(built)
    result = build(manifest)  # up to date: nothing runs, the recorded results come back
    assert result.plan.up_to_date
    assert {r.test.name for r in result.tests} == {t.name for t in manifest.tests}
    assert all(r.reused for r in result.tests)


def test_a_source_changed_while_the_build_waits_for_the_lock_is_built_as_it_is_then(built, monkeypatch):
    """The plan is made again under the lock; it reuses the fingerprints taken just before
    (a file is hashed once per build), except for a file whose size or mtime has changed."""
    import funnel.build.plan as plan
    import funnel.workdir as workdir

    users = built / "raw_data" / "users.csv"
    lines = users.read_text().splitlines(keepends=True)
    users.write_text("".join(lines[:-1]))  # one user fewer: this build has something to do
    hashed: list[str] = []
    real_fingerprint, real_lock = plan.fingerprint, workdir.build_lock

    def counting(path, previous=None):
        fp = real_fingerprint(path, previous)
        if fp is not previous:
            hashed.append(path.name)
        return fp

    @contextlib.contextmanager
    def lock_then_edit(env, wait=0.0):
        with real_lock(env, wait):
            users.write_text("".join(lines[:-2]))  # another user fewer, while this build waited
            yield

    monkeypatch.setattr(plan, "fingerprint", counting)
    monkeypatch.setattr(workdir, "build_lock", lock_then_edit)
    manifest = compiled(built)
    result = build(manifest, full_refresh=True)  # no record to reuse fingerprints from
    assert {s.name: s.rows for s in result.steps}["pipedrive.users"] == len(lines) - 3
    files = sorted(s.file_name for s in manifest.sources)
    assert sorted(hashed) == sorted([*files, "users.csv"])  # each once, and users again after the edit
    with duckdb.connect(str(built / "target" / "dev.duckdb"), read_only=True) as con:
        (info,) = con.execute("select info from _funnel.build_info").fetchone()
    assert json.loads(info)["fingerprints"]["users"]["sha256"] == real_fingerprint(users).sha256


def test_an_edited_macro_reruns_the_models_that_call_it(built, runner):
    macro = built / "sql" / "macros" / "month.sql"
    macro.write_text(macro.read_text().replace("date_trunc('month', {{ ts }})::date", "(date_trunc('month', {{ ts }})::date)"))
    manifest = compiled(built)
    # month() directly, or through step_entries(), which calls it
    callers = {n for n, m in manifest.graph.models.items() if any(c in m.path.read_text() for c in ("month(", "step_entries("))}
    assert len(callers) == 8
    reached = callers.union(*(manifest.graph.downstream(n) for n in callers))
    plan = make_plan(manifest)
    assert set(plan.names("model", "run")) == reached
    assert {s.reason for s in plan.steps if s.kind == "model" and s.name in callers} == {"SQL changed"}
    result = runner.invoke(app, ["build"])
    assert result.exit_code == 0, result.output


def test_a_sql_test_reads_a_declared_source_and_reruns_when_it_is_reloaded(built, runner):
    sql = built / "sql"
    sql.joinpath("sources.toml").write_text(
        sql.joinpath("sources.toml").read_text()
        + '\n[pipedrive.stage_names]\ncolumns = { stage_id = "BIGINT", stage_name = "VARCHAR" }\n'
    )
    shutil.copy(built / "raw_data" / "stages.csv", built / "raw_data" / "stage_names.csv")
    (sql / "tests" / "stage_names_are_known.sql").write_text(
        "{{ config(severity='warn') }}\n"
        "select * from {{ source('pipedrive', 'stage_names') }}\n"
        "where stage_id not in (select stage_id from {{ ref('stg_stages') }})\n"
    )
    (sql / "tests" / "every_stage_name.sql").write_text(  # reads no model; warns with every row
        "{{ config(severity='warn') }}\nselect * from {{ source('pipedrive', 'stage_names') }}\n"
    )
    assert runner.invoke(app, ["build"]).exit_code == 0
    names = built / "raw_data" / "stage_names.csv"
    names.write_text(names.read_text() + "99,Unknown stage\n")
    plan = make_plan(compiled(built))
    assert ("test", "stage_names_are_known", "test", "source stage_names reloaded") in {
        (s.kind, s.name, s.action, s.reason) for s in plan.steps
    }
    result = runner.invoke(app, ["build"])
    assert result.exit_code == 0, result.output
    assert "WARN  test   stage_names_are_known: 1 row" in result.stderr
    # A test reading no model: --exclude of a model keeps it, --select of one leaves it out.
    assert "every_stage_name" in runner.invoke(app, ["test", "--exclude", "rep_stage_velocity"]).stderr
    assert "every_stage_name" not in runner.invoke(app, ["test", "--select", "rep_stage_velocity"]).stderr
