"""funnel export / parity against a real PostgreSQL server (skipped when none answers).

Each test exports into its own schema and drops it afterwards.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import pytest

from funnel.cli import app

from .conftest import ENVIRONMENTS, SHARED_RAW, needs_shared_raw, read_report, reference_rows, sampled

PG = {
    "host": os.environ.get("PGHOST", "127.0.0.1"),
    "port": int(os.environ.get("PGPORT", "5432")),
    "user": os.environ.get("PGUSER", "postgres"),
    "dbname": os.environ.get("PGDATABASE", "postgres"),
}


def _server_answers() -> str | None:
    try:
        import psycopg

        with psycopg.connect(**PG, connect_timeout=3):  # type: ignore[arg-type]
            return None
    except Exception as e:  # any failure means: no server for these tests
        return f"no PostgreSQL server answers at {PG['host']}:{PG['port']} as {PG['user']} ({str(e).strip().splitlines()[0]})"


_SKIP = _server_answers()
pytestmark = [pytest.mark.postgres, pytest.mark.skipif(_SKIP is not None, reason=_SKIP or "")]


@pytest.fixture
def pg():
    import psycopg

    with psycopg.connect(**PG, autocommit=True) as conn:  # type: ignore[arg-type]
        yield conn


@pytest.fixture
def schema(project: Path, pg):
    """A unique target schema for this test, written into the project's config; dropped after."""
    name = f"funnel_test_{secrets.token_hex(4)}"
    text = ENVIRONMENTS.replace('"public_pipedrive_analytics"', f'"{name}"')
    text += f'[dev.postgres]\nhost = "{PG["host"]}"\nport = {PG["port"]}\nuser = "{PG["user"]}"\ndbname = "{PG["dbname"]}"\n'
    (project / "environments.toml").write_text(text)
    yield name
    pg.execute(f'drop schema if exists "{name}" cascade')
    for side in side_schemas(pg, name):
        pg.execute(f'drop schema "{side}" cascade')


def side_schemas(pg, schema: str) -> list[str]:
    """The side schemas of exports into `schema` (this test's only: other runs may be exporting)."""
    rows = pg.execute(
        "select nspname from pg_namespace where nspname like '\\_funnel\\_load\\_%%' "
        "and obj_description(oid, 'pg_namespace') = %s",
        [f"funnel export into {schema}"],
    ).fetchall()
    return [name for (name,) in rows]


def build(runner, *args: str) -> None:
    result = runner.invoke(app, ["build", *args])
    assert result.exit_code == 0, result.output


def export(runner, *args: str):
    return runner.invoke(app, ["export", *args])


def pg_rows(pg, schema: str, table: str = "rep_sales_funnel_monthly") -> list[tuple]:
    return pg.execute(f'select * from "{schema}"."{table}" order by month, funnel_step').fetchall()


@pytest.mark.slow
def test_round_trip_equals_the_duckdb_build_with_the_same_types(project, runner, pg, schema):
    build(runner)
    result = export(runner)
    assert result.exit_code == 0, result.output
    with duckdb.connect(str(project / "target" / "dev.duckdb"), read_only=True) as con:
        (reporting,) = con.execute(
            "select count(*) from duckdb_tables() where schema_name = ? and table_name like 'rep\\_%' escape '\\'", [schema]
        ).fetchone()
    assert f"Exported {reporting} table(s)" in result.stderr  # every reporting table of the build
    assert pg_rows(pg, schema) == read_report(project / "target" / "dev.duckdb", schema)
    types = pg.execute(
        "select column_name, data_type, numeric_precision, numeric_scale from information_schema.columns "
        "where table_schema = %s and table_name = 'rep_sales_funnel_monthly' order by ordinal_position",
        [schema],
    ).fetchall()
    assert types == [
        ("month", "date", None, None),
        ("kpi_name", "text", None, None),
        ("funnel_step", "numeric", 3, 1),
        ("deals_count", "bigint", 64, 0),
    ]


@needs_shared_raw
def test_round_trip_of_the_real_export_equals_the_reference(project, runner, pg, schema):
    build(runner, "--raw-data", str(SHARED_RAW))
    assert export(runner).exit_code == 0
    ours = [(str(m), k, str(s), c) for m, k, s, c in pg_rows(pg, schema)]
    assert ours == reference_rows()


def test_every_type_maps_faithfully(project, runner, pg, schema):
    build(runner)
    assert export(runner, "--select", "int_deal_stage_history stg_activity stg_users").exit_code == 0

    def types(table):
        return dict(
            pg.execute(
                "select column_name, data_type from information_schema.columns where table_schema = %s and table_name = %s",
                [schema, table],
            ).fetchall()
        )

    assert types("int_deal_stage_history") == {
        "deal_id": "bigint",
        "stage_id": "bigint",
        "stage_name": "text",
        "first_entered_at": "timestamp without time zone",
        "last_entered_at": "timestamp without time zone",
        "times_entered": "bigint",
    }
    assert types("stg_activity")["is_done"] == "boolean"
    assert types("stg_users")["modified_at"] == "timestamp without time zone"
    check = runner.invoke(app, ["parity", "--select", "int_deal_stage_history stg_activity stg_users"])
    assert check.exit_code == 0, check.output


def test_a_second_export_replaces_without_duplicates(project, runner, pg, schema):
    build(runner)
    assert export(runner).exit_code == 0
    first = pg_rows(pg, schema)
    assert export(runner).exit_code == 0
    assert pg_rows(pg, schema) == first


def test_a_view_on_the_table_survives_a_new_export(project, runner, pg, schema):
    build(runner)
    assert export(runner).exit_code == 0
    pg.execute(
        f'create view "{schema}".dashboard as '
        f'select month, sum(deals_count) as n from "{schema}".rep_sales_funnel_monthly group by month'
    )
    before = pg.execute(f'select * from "{schema}".dashboard order by month').fetchall()
    assert export(runner).exit_code == 0
    assert pg.execute(f'select * from "{schema}".dashboard order by month').fetchall() == before


def probe_model(project: Path, sql: str) -> None:
    """A second reporting model, rep_probe, that the default export also writes."""
    (project / "sql" / "reporting" / "rep_probe.sql").write_text(sql)


def probe_columns(pg, schema: str) -> list[tuple[str, str]]:
    return pg.execute(
        "select column_name, data_type from information_schema.columns "
        "where table_schema = %s and table_name = 'rep_probe' order by ordinal_position",
        [schema],
    ).fetchall()


def test_columns_in_a_new_order_are_exported_by_name_under_a_view(project, runner, pg, schema):
    probe_model(project, "select 1 as a, 2 as b, 'x' as label")
    build(runner)
    assert export(runner).exit_code == 0
    pg.execute(f'create view "{schema}".probe_view as select a, b, label from "{schema}".rep_probe')
    probe_model(project, "select 'x' as label, 2 as b, 1 as a")
    build(runner)
    result = export(runner)
    assert result.exit_code == 0, result.output
    assert pg.execute(f'select a, b, label from "{schema}".probe_view').fetchall() == [(1, 2, "x")]
    assert runner.invoke(app, ["parity"]).exit_code == 0


@pytest.mark.slow
def test_columns_no_view_uses_follow_the_model_under_a_view(project, runner, pg, schema):
    probe_model(project, "select 1 as a, 2 as unused, 3 as retyped")
    build(runner)
    assert export(runner).exit_code == 0
    pg.execute(f'create view "{schema}".probe_view as select a from "{schema}".rep_probe')
    # `unused` goes, `retyped` becomes text, `extra` is new: no view needs any of them.
    probe_model(project, "select 'new' as extra, 'three' as retyped, 10 as a")
    build(runner)
    result = export(runner)
    assert result.exit_code == 0, result.output
    assert probe_columns(pg, schema) == [("a", "integer"), ("retyped", "text"), ("extra", "text")]
    assert pg.execute(f'select * from "{schema}".probe_view').fetchall() == [(10,)]
    assert pg.execute(f'select extra, retyped from "{schema}".rep_probe').fetchall() == [("new", "three")]
    assert runner.invoke(app, ["parity"]).exit_code == 0


@pytest.mark.parametrize(
    ("new_model", "change"),
    sampled(
        [("select 1 as a", "b is gone"), ("select 1 as a, 'two' as b", "b integer becomes text")],
        {"type-changed"},
        ["column-gone", "type-changed"],
    ),
)
def test_a_column_a_view_needs_cannot_change_and_nothing_changes(project, runner, pg, schema, new_model, change):
    probe_model(project, "select 1 as a, 2 as b")
    build(runner)
    assert export(runner).exit_code == 0
    report_before = pg_rows(pg, schema)
    pg.execute(f'create view "{schema}".probe_view as select b from "{schema}".rep_probe')
    pg.execute(f'create view "{schema}".other_view as select a + b as total from "{schema}".rep_probe')
    pg.execute(f'create view "{schema}".a_only as select a from "{schema}".rep_probe')
    probe_model(project, new_model)
    with duckdb.connect(str(project / "target" / "dev.duckdb")) as con:  # the report changes too
        con.execute(f'update "{schema}".rep_sales_funnel_monthly set deals_count = deals_count + 1000')
    build(runner, "--select", "rep_probe")
    result = export(runner)
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1
    assert lines[0].startswith(f"Error: {schema}.rep_probe: views {schema}.other_view, {schema}.probe_view use columns")
    assert f"({change})" in lines[0] and "a_only" not in lines[0]
    assert lines[0].endswith("The previous tables are unchanged.")
    assert probe_columns(pg, schema) == [("a", "integer"), ("b", "integer")]
    assert pg.execute(f'select a, b from "{schema}".rep_probe').fetchall() == [(1, 2)]
    assert pg_rows(pg, schema) == report_before


@pytest.mark.slow
def test_a_failure_in_the_middle_leaves_the_previous_tables(project, runner, pg, schema):
    build(runner)
    assert export(runner).exit_code == 0
    before = pg_rows(pg, schema)
    # A second reporting model, exported after the first, with a type PostgreSQL cannot take.
    (project / "sql" / "reporting" / "rep_zz_broken.sql").write_text("select [1, 2] as xs")
    build(runner)
    result = export(runner)
    assert result.exit_code == 1
    assert "rep_zz_broken.xs: DuckDB type INTEGER[] has no PostgreSQL equivalent" in result.stderr
    assert pg_rows(pg, schema) == before
    assert side_schemas(pg, schema) == []


@pytest.mark.slow
def test_a_killed_export_leaves_the_previous_tables(project, runner, pg, schema):
    build(runner)
    assert export(runner).exit_code == 0
    before = pg_rows(pg, schema)
    db = project / "target" / "dev.duckdb"
    with duckdb.connect(str(db)) as con:  # make the next export visibly different
        con.execute(f'update "{schema}".rep_sales_funnel_monthly set deals_count = deals_count + 1000')
    # Kill the exporting process after every table is copied, just before the swap.
    code = textwrap.dedent(
        """
        import os, signal, sys
        import funnel.outputs.postgres as export
        def die(*args):
            os.kill(os.getpid(), signal.SIGKILL)
        export._swap = die
        sys.argv = ["funnel", "export"]
        from funnel.cli import main
        main()
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=project, capture_output=True, timeout=120)
    assert proc.returncode == -9
    assert pg_rows(pg, schema) == before
    # The next export cleans up what the killed one left and succeeds.
    assert export(runner).exit_code == 0
    assert side_schemas(pg, schema) == []
    assert pg_rows(pg, schema) != before


def kill_export_at_the_swap(project: Path) -> subprocess.CompletedProcess[bytes]:
    """Run `funnel export` in a process that SIGKILLs itself once every table is copied."""
    code = textwrap.dedent(
        """
        import os, signal, sys
        import funnel.outputs.postgres as export
        def die(*args):
            os.kill(os.getpid(), signal.SIGKILL)
        export._swap = die
        sys.argv = ["funnel", "export"]
        from funnel.cli import main
        main()
        """
    )
    return subprocess.run([sys.executable, "-c", code], cwd=project, capture_output=True, timeout=120)


@pytest.mark.slow
def test_a_killed_export_leaves_its_table_copies_where_the_next_run_removes_them(project, runner, pg, schema):
    build(runner)
    proc = kill_export_at_the_swap(project)
    assert proc.returncode == -9
    left = [p for p in (project / "target").iterdir() if p.name.startswith(".funnel-export-")]
    assert len(left) == 1 and list(left[0].rglob("*.csv")), "the killed export's CSV copies should be beside the build"
    assert runner.invoke(app, ["parity"]).exit_code == 1  # nothing exported yet; parity cleans up all the same
    assert not left[0].exists()
    kill_export_at_the_swap(project)
    assert export(runner).exit_code == 0
    assert [p for p in (project / "target").iterdir() if p.name.startswith(".funnel-export-")] == []


@pytest.fixture
def dashboard(pg, schema):
    """Run `hold()` to open a dashboard's transaction that has read the report: it holds a read lock."""
    import psycopg

    conn = psycopg.connect(**PG, application_name="dashboard-under-test")  # type: ignore[arg-type]

    def hold() -> int:
        conn.execute(f'select count(*) from "{schema}".rep_sales_funnel_monthly').fetchone()
        return conn.info.backend_pid

    yield hold
    conn.close()


def start_export(project: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "funnel", "export"], cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def wait_until_export_waits_for_its_lock(pg, schema: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        waiting = pg.execute(
            "select count(*) from pg_locks where not granted and relation = to_regclass(%s)",
            [f'"{schema}".rep_sales_funnel_monthly'],
        ).fetchone()
        if waiting[0]:
            return
        time.sleep(0.05)
    raise AssertionError(f"the export never waited for its lock: {proc.communicate(timeout=60)}")


@pytest.mark.slow
def test_a_held_read_lock_makes_export_give_up_in_time_without_holding_up_readers(project, runner, pg, schema, dashboard):
    import psycopg

    (project / "environments.toml").write_text((project / "environments.toml").read_text() + "lock_timeout = 4\n")
    build(runner)
    assert export(runner).exit_code == 0
    before = pg_rows(pg, schema)
    with duckdb.connect(str(project / "target" / "dev.duckdb")) as con:
        con.execute(f'update "{schema}".rep_sales_funnel_monthly set deals_count = deals_count + 1000')
    holder = dashboard()
    proc = start_export(project)
    try:
        wait_until_export_waits_for_its_lock(pg, schema, proc)
        waiting_since = time.monotonic()
        # A new dashboard query now queues behind the export's lock request.
        with psycopg.connect(**PG, autocommit=True) as reader:  # type: ignore[arg-type]
            reader.execute("set lock_timeout = '8s'")  # without this the old export would hold it forever
            started = time.monotonic()
            assert reader.execute(f'select count(*) from "{schema}".rep_sales_funnel_monthly').fetchone() == (len(before),)
            held_up = time.monotonic() - started
        _, err = proc.communicate(timeout=60)
        gave_up_after = time.monotonic() - waiting_since
    finally:
        proc.kill()
        proc.communicate()
    assert held_up < 3, f"a reader waited {held_up:.1f}s behind the export"
    assert proc.returncode == 1, err
    assert gave_up_after < 4 + 5, f"the export gave up {gave_up_after:.1f}s after it started waiting, not about 4s"
    errors = [line for line in err.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "Traceback" not in err, err
    assert errors[0].startswith("Error: PostgreSQL tables ") and f"{schema}.rep_sales_funnel_monthly" in errors[0]
    assert " stayed locked for 4s by session " in errors[0]
    assert f"pid {holder} (application_name 'dashboard-under-test', state idle in transaction, query started " in errors[0]
    assert "the previous tables are unchanged" in errors[0] and "raise lock_timeout in [dev.postgres]" in errors[0]
    assert pg_rows(pg, schema) == before


@pytest.mark.slow
def test_an_interrupted_export_rolls_back_and_exits_130(project, runner, pg, schema, dashboard):
    build(runner)
    assert export(runner).exit_code == 0
    before = pg_rows(pg, schema)
    with duckdb.connect(str(project / "target" / "dev.duckdb")) as con:
        con.execute(f'update "{schema}".rep_sales_funnel_monthly set deals_count = deals_count + 1000')
    dashboard()
    proc = start_export(project)
    try:
        wait_until_export_waits_for_its_lock(pg, schema, proc)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.communicate()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and not [line for line in err.splitlines() if line.startswith("Error:")], err
    assert pg_rows(pg, schema) == before
    assert pg.execute(
        "select count(*) from pg_locks where relation = to_regclass(%s) and not granted", [f'"{schema}".rep_sales_funnel_monthly']
    ).fetchone() == (0,)
    assert side_schemas(pg, schema) == []
    assert [p for p in (project / "target").iterdir() if p.name.startswith(".funnel-export-")] == []


def test_parity_detects_a_changed_row(project, runner, pg, schema):
    build(runner)
    assert export(runner).exit_code == 0
    ok = runner.invoke(app, ["parity"])
    assert ok.exit_code == 0, ok.output
    assert "rep_sales_funnel_monthly: OK" in ok.stdout and "missing=0 unexpected=0" in ok.stdout
    pg.execute(
        f'update "{schema}".rep_sales_funnel_monthly set deals_count = deals_count + 1 '
        f'where (month, funnel_step) = (select month, funnel_step from "{schema}".rep_sales_funnel_monthly '
        "order by month, funnel_step limit 1)"
    )
    bad = runner.invoke(app, ["parity"])
    assert bad.exit_code == 1
    assert "DIFFERENT" in bad.stdout and "missing=1 unexpected=1" in bad.stdout
    assert any(line.strip().startswith("missing") for line in bad.stdout.splitlines())


@pytest.mark.slow
def test_parity_reports_a_table_never_exported(project, runner, schema):
    build(runner)
    result = runner.invoke(app, ["parity"])
    assert result.exit_code == 1
    assert "rep_sales_funnel_monthly: MISSING in PostgreSQL" in result.stdout


def test_export_needs_a_build(project, runner, schema):
    result = export(runner)
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1].startswith("Error: no build of env 'dev'")


def test_password_in_config_or_dsn_is_refused(project, runner, schema):
    build(runner)
    config = project / "environments.toml"
    config.write_text(config.read_text() + 'password = "secret"\n')
    result = export(runner)
    assert result.exit_code == 1
    assert "holds a password; remove it and set PGPASSWORD or use ~/.pgpass instead." in result.stderr
    config.write_text(config.read_text().replace('password = "secret"\n', ""))
    result = export(runner, "--dsn", f"postgresql://{PG['user']}:secret@{PG['host']}/{PG['dbname']}")
    assert result.exit_code == 1
    assert "--dsn holds a password" in result.stderr


@pytest.mark.parametrize(
    "dsn",
    sampled(
        [
            "dbname=postgresql://u:secret@127.0.0.1/db",
            f"postgresql://{PG['user']}@{PG['host']}:{PG['port']}/db?dbname=postgresql://u:secret@h/db",
            "host=127.0.0.1 dbname='x password=secret'",
        ],
        {"url-in-url-dbname"},
        ["url-in-dbname", "url-in-url-dbname", "conninfo-in-dbname"],
    ),
)
def test_a_password_hidden_in_the_dsn_is_refused_and_never_printed(project, runner, schema, dsn):
    build(runner)
    for command in ("export", "parity"):
        result = runner.invoke(app, [command, "--dsn", dsn])
        assert result.exit_code == 1, result.output
        assert "secret" not in result.output
        assert "--dsn holds a password; remove it and set PGPASSWORD" in result.stderr


@pytest.mark.parametrize(
    ("dsn", "secret"),
    sampled(
        [("postgresql://u:sec ret@h/db", "sec ret"), ("host='x password=secret", "secret")],
        {"unterminated-quote"},
        ["url-with-space", "unterminated-quote"],
    ),
)
def test_a_malformed_dsn_with_a_password_is_not_echoed(project, runner, schema, dsn, secret):
    build(runner)
    result = export(runner, "--dsn", dsn)
    assert result.exit_code == 1, result.output
    assert secret not in result.output
    assert "Error: --dsn is not a libpq connection string or URL." in result.stderr


def test_a_password_in_the_configured_dbname_is_refused_and_never_printed(project, runner, schema):
    build(runner)
    config = project / "environments.toml"
    config.write_text(config.read_text().replace(f'dbname = "{PG["dbname"]}"', 'dbname = "postgresql://u:secret@h/db"'))
    result = export(runner)
    assert result.exit_code == 1, result.output
    assert "secret" not in result.output
    assert "[dev.postgres] dbname holds a password" in result.stderr


def test_a_password_the_server_echoes_back_is_masked(project, runner, schema, monkeypatch):
    build(runner)
    config = project / "environments.toml"
    config.write_text(config.read_text().replace(f'dbname = "{PG["dbname"]}"\n', ""))
    monkeypatch.setenv("PGDATABASE", "postgresql://u:secret@h/db")  # libpq reads it; the server says it back
    for command in ("export", "parity"):
        result = runner.invoke(app, [command])
        assert result.exit_code == 1, result.output
        assert "secret" not in result.output
        assert 'database "postgresql://u:***@h/db" does not exist' in result.stderr


def test_refused_connection_is_one_clear_line(project, runner, schema):
    build(runner)
    result = export(runner, "--dsn", "host=127.0.0.1 port=1")
    assert result.exit_code == 1
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("Error: cannot connect to PostgreSQL at 127.0.0.1:1")
    assert "start the server" in line


def test_missing_permission_is_one_clear_line(project, runner, pg, schema):
    build(runner)
    role = f"funnel_test_role_{secrets.token_hex(3)}"
    pg.execute(f"create role {role} login")  # no CREATE on the database: it cannot make the schema
    try:
        result = export(runner, "--dsn", f"user={role}")
        assert result.exit_code == 1
        assert "PostgreSQL refused (permission denied" in result.stderr
        assert "grant the user CREATE" in result.stderr
    finally:
        pg.execute(f"drop role {role}")


@pytest.mark.slow
def test_pg_variables_override_the_config(project, runner, pg, schema, monkeypatch):
    build(runner)
    monkeypatch.setenv("PGPORT", "1")
    result = export(runner)
    assert result.exit_code == 1 and "127.0.0.1:1" in result.stderr
    result = export(runner, "--dsn", f"port={PG['port']}")  # --dsn beats PG* variables
    assert result.exit_code == 0, result.output


@pytest.mark.slow
def test_large_tables_load_over_parallel_connections_exactly(project, runner, pg, schema, monkeypatch):
    import funnel.outputs.postgres

    monkeypatch.setattr(funnel.outputs.postgres, "PARALLEL_FROM_ROWS", 100)
    monkeypatch.setattr(funnel.outputs.postgres, "PARALLEL_COPIES", 3)
    # Text with commas, quotes and newlines must survive being split into parts.
    (project / "sql" / "reporting" / "rep_tricky_text.sql").write_text(
        "select i as id, 'line one' || chr(10) || 'line \"two\", ' || i::varchar as note from range(1000) as t(i)"
    )
    build(runner)
    result = export(runner)
    assert result.exit_code == 0, result.output
    assert pg.execute(f'select count(*), count(distinct id) from "{schema}".rep_tricky_text').fetchone() == (1000, 1000)
    assert pg.execute(f'select note from "{schema}".rep_tricky_text where id = 7').fetchone() == ('line one\nline "two", 7',)
    check = runner.invoke(app, ["parity"])
    assert check.exit_code == 0, check.output


@pytest.mark.slow
def test_a_model_added_after_the_build_is_named(project, runner, schema):
    build(runner)
    (project / "sql" / "reporting" / "rep_new.sql").write_text("select 1 as x")
    for command in ("export", "parity"):
        result = runner.invoke(app, [command])
        assert result.exit_code == 1, result.output
        assert "model rep_new is not in the build of" in result.stderr and "run funnel build first" in result.stderr


@pytest.mark.slow
def test_a_server_lost_mid_export_leaves_the_previous_tables(project, runner, pg, schema, monkeypatch):
    import funnel.outputs.postgres

    build(runner)
    assert export(runner).exit_code == 0
    before = pg_rows(pg, schema)
    with duckdb.connect(str(project / "target" / "dev.duckdb")) as con:
        con.execute(f'update "{schema}".rep_sales_funnel_monthly set deals_count = deals_count + 1000')
    swap = funnel.outputs.postgres._swap

    def swap_after_the_server_drops_us(conn, *args):
        pg.execute("select pg_terminate_backend(%s)", [conn.info.backend_pid])
        swap(conn, *args)

    monkeypatch.setattr(funnel.outputs.postgres, "_swap", swap_after_the_server_drops_us)
    result = export(runner)
    assert result.exit_code == 1
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("Error: PostgreSQL connection lost during the export")
    assert line.endswith("the previous tables are unchanged.")
    assert pg_rows(pg, schema) == before


def _label_one_reason_empty_and_one_missing(project: Path) -> None:
    """Lost reason 1 labelled "" (an option Pipedrive lets you save), reason 5 without an
    option (its label is NULL): rep_lost_reasons_monthly then holds both '' and NULL."""
    fields = project / "raw_data" / "fields.csv"
    text = fields.read_text()
    for old, new in (('""Customer Not Ready""', '""""'), (',{""id"": ""5"", ""label"": ""Duplicate Entry""}', "")):
        assert old in text
        text = text.replace(old, new)
    fields.write_text(text)


@pytest.mark.parametrize("parts", sampled([1, 3], {"one-copy"}, ["one-copy", "parallel-copies"]))
def test_empty_text_and_null_survive_the_export_and_parity_tells_them_apart(project, runner, pg, schema, monkeypatch, parts):
    import funnel.outputs.postgres as export_module

    if parts > 1:  # the parts are written by DuckDB with partition_by and copied over several connections
        monkeypatch.setattr(export_module, "PARALLEL_FROM_ROWS", 1)
        monkeypatch.setattr(export_module, "PARALLEL_COPIES", parts)
    _label_one_reason_empty_and_one_missing(project)
    build(runner)
    with duckdb.connect(str(project / "target" / "dev.duckdb"), read_only=True) as con:
        ours = con.execute(
            f'select lost_reason_id, lost_reason from "{schema}".rep_lost_reasons_monthly where lost_reason_id in (1, 5)'
        ).fetchall()
    assert {r for r in ours if r[0] == 1} == {(1, "")} and {r for r in ours if r[0] == 5} == {(5, None)}
    assert export(runner, "--select", "rep_lost_reasons_monthly").exit_code == 0
    table = f'"{schema}".rep_lost_reasons_monthly'
    in_pg = pg.execute(f"select lost_reason_id, lost_reason from {table} where lost_reason_id in (1, 5)").fetchall()
    assert sorted(in_pg, key=str) == sorted(ours, key=str)  # '' stays '', NULL stays NULL

    ok = runner.invoke(app, ["parity", "--select", "rep_lost_reasons_monthly"])
    assert ok.exit_code == 0, ok.output
    assert "rep_lost_reasons_monthly: OK" in ok.stdout

    # PostgreSQL '' where the build has NULL, then NULL where the build has '': both differ.
    pg.execute(f"update {table} set lost_reason = '' where lost_reason_id = 5")
    bad = runner.invoke(app, ["parity", "--select", "rep_lost_reasons_monthly"])
    assert bad.exit_code == 1 and "rep_lost_reasons_monthly: DIFFERENT" in bad.stdout
    changed = sum(1 for r in ours if r[0] == 5)
    assert f"missing={changed} unexpected={changed}" in bad.stdout
    examples = [line.split() for line in bad.stdout.splitlines()[1:]]
    assert {(kind, row[2]) for kind, *row in examples} == {("missing", "NULL,"), ("unexpected", "'',")}
    pg.execute(f"update {table} set lost_reason = null where lost_reason_id = 5")
    pg.execute(f"update {table} set lost_reason = null where lost_reason_id = 1")
    bad = runner.invoke(app, ["parity", "--select", "rep_lost_reasons_monthly"])
    changed = sum(1 for r in ours if r[0] == 1)
    assert bad.exit_code == 1 and f"missing={changed} unexpected={changed}" in bad.stdout
