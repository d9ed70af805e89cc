"""funnel export / parity against a real PostgreSQL server (skipped when none answers).

Each test exports into its own schema and drops it afterwards.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import pytest

from funnel.cli import app

from .conftest import ENVIRONMENTS, SHARED_RAW, needs_shared_raw, read_report, reference_rows

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
    for (side,) in pg.execute("select nspname from pg_namespace where nspname like '\\_funnel\\_load\\_%'").fetchall():
        pg.execute(f'drop schema "{side}" cascade')


def build(runner, *args: str) -> None:
    result = runner.invoke(app, ["build", *args])
    assert result.exit_code == 0, result.output


def export(runner, *args: str):
    return runner.invoke(app, ["export", *args])


def pg_rows(pg, schema: str, table: str = "rep_sales_funnel_monthly") -> list[tuple]:
    return pg.execute(f'select * from "{schema}"."{table}" order by month, funnel_step').fetchall()


def test_round_trip_equals_the_duckdb_build_with_the_same_types(project, runner, pg, schema):
    build(runner)
    result = export(runner)
    assert result.exit_code == 0, result.output
    assert "Exported 6 table(s)" in result.stderr  # the funnel and the five analyses
    assert pg_rows(pg, schema) == read_report(project / "build" / "dev.duckdb", schema)
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
    assert pg.execute("select count(*) from pg_namespace where nspname like '\\_funnel\\_load\\_%'").fetchone() == (0,)


def test_a_killed_export_leaves_the_previous_tables(project, runner, pg, schema):
    build(runner)
    assert export(runner).exit_code == 0
    before = pg_rows(pg, schema)
    db = project / "build" / "dev.duckdb"
    with duckdb.connect(str(db)) as con:  # make the next export visibly different
        con.execute(f'update "{schema}".rep_sales_funnel_monthly set deals_count = deals_count + 1000')
    # Kill the exporting process after every table is copied, just before the swap.
    code = textwrap.dedent(
        """
        import os, signal, sys
        import funnel.export as export
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
    assert pg.execute("select count(*) from pg_namespace where nspname like '\\_funnel\\_load\\_%'").fetchone() == (0,)
    assert pg_rows(pg, schema) != before


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


def test_pg_variables_override_the_config(project, runner, pg, schema, monkeypatch):
    build(runner)
    monkeypatch.setenv("PGPORT", "1")
    result = export(runner)
    assert result.exit_code == 1 and "127.0.0.1:1" in result.stderr
    result = export(runner, "--dsn", f"port={PG['port']}")  # --dsn beats PG* variables
    assert result.exit_code == 0, result.output


def test_large_tables_load_over_parallel_connections_exactly(project, runner, pg, schema, monkeypatch):
    import funnel.export

    monkeypatch.setattr(funnel.export, "PARALLEL_FROM_ROWS", 100)
    monkeypatch.setattr(funnel.export, "PARALLEL_COPIES", 3)
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


def test_a_model_added_after_the_build_is_named(project, runner, schema):
    build(runner)
    (project / "sql" / "reporting" / "rep_new.sql").write_text("select 1 as x")
    for command in ("export", "parity"):
        result = runner.invoke(app, [command])
        assert result.exit_code == 1, result.output
        assert "model rep_new is not in the build of" in result.stderr and "run funnel build first" in result.stderr


def test_a_server_lost_mid_export_leaves_the_previous_tables(project, runner, pg, schema, monkeypatch):
    import funnel.export

    build(runner)
    assert export(runner).exit_code == 0
    before = pg_rows(pg, schema)
    with duckdb.connect(str(project / "build" / "dev.duckdb")) as con:
        con.execute(f'update "{schema}".rep_sales_funnel_monthly set deals_count = deals_count + 1000')
    swap = funnel.export._swap

    def swap_after_the_server_drops_us(conn, *args):
        pg.execute("select pg_terminate_backend(%s)", [conn.info.backend_pid])
        swap(conn, *args)

    monkeypatch.setattr(funnel.export, "_swap", swap_after_the_server_drops_us)
    result = export(runner)
    assert result.exit_code == 1
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("Error: PostgreSQL connection lost during the export")
    assert line.endswith("the previous tables are unchanged.")
    assert pg_rows(pg, schema) == before
