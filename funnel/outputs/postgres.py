"""`funnel export` to PostgreSQL: the connection string, the connection, and the export.

Every table is copied (psycopg COPY, CSV written by DuckDB) into a side schema, then
swapped into the environment's schema, all in one transaction. Readers see the old
tables until the commit and the new ones after it; a killed export or a lost server
rolls back and leaves the previous tables complete.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from funnel import atomic
from funnel.engine import database
from funnel.errors import ConfigError, ExportError, first_line
from funnel.outputs.files import Exported, columns, selected
from funnel.outputs.query import counted_with
from funnel.project.config import Environment
from funnel.quoting import quote_ident, quote_literal, relation
from funnel.workdir import scratch_folder

if TYPE_CHECKING:
    import duckdb
    import psycopg

    from funnel.project.manifest import Manifest

PG_ENV = {"host": "PGHOST", "port": "PGPORT", "user": "PGUSER", "dbname": "PGDATABASE", "sslmode": "PGSSLMODE"}
PG_TYPES = {
    "BOOLEAN": "boolean",
    "TINYINT": "smallint",
    "SMALLINT": "smallint",
    "INTEGER": "integer",
    "BIGINT": "bigint",
    "HUGEINT": "numeric(39,0)",
    "UTINYINT": "smallint",
    "USMALLINT": "integer",
    "UINTEGER": "bigint",
    "UBIGINT": "numeric(20,0)",
    "FLOAT": "real",
    "DOUBLE": "double precision",
    "DATE": "date",
    "TIME": "time",
    "TIMESTAMP": "timestamp",
    "TIMESTAMP WITH TIME ZONE": "timestamptz",
    "INTERVAL": "interval",
    "VARCHAR": "text",
    "JSON": "json",
    "UUID": "uuid",
    "BLOB": "bytea",
}
SECRETS = (
    re.compile(r"(\b[a-z][a-z0-9+.-]*://[^\s/@:'\"]*:)[^\s'\"]*(?=@)", re.IGNORECASE),  # scheme://user:PASSWORD@
    re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&'\"]+)", re.IGNORECASE),  # password=... in conninfo or URL
)
DECIMAL = re.compile(r"DECIMAL\((\d+),(\d+)\)")
CHUNK = 1 << 20
PARALLEL_COPIES = max(1, min(4, os.cpu_count() or 1))  # the server parses CSV on one core per connection
PARALLEL_FROM_ROWS = 100_000
LOCK_TRY_SECONDS = 1.0  # how long one try to lock the exported tables may hold up their readers
LOCK_PAUSE_SECONDS = 0.5  # between tries: the readers queued behind the last one go first


def pg_type(duck_type: str, where: str) -> str:
    """The PostgreSQL type for a DuckDB column type; ExportError if there is none."""
    if duck_type.startswith("ENUM("):
        return "text"
    match = DECIMAL.fullmatch(duck_type)
    if match:
        return f"numeric({match.group(1)},{match.group(2)})"
    if duck_type in PG_TYPES:
        return PG_TYPES[duck_type]
    raise ExportError(f"{where}: DuckDB type {duck_type} has no PostgreSQL equivalent here; cast it in the model.")


def conninfo(env: Environment, dsn: str | None) -> str:
    """Connection string: environments.toml, then PG* variables, then --dsn, each overriding the last."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    params: dict[str, Any] = {k: v for k, v in env.postgres.conninfo_params().items() if not os.environ.get(PG_ENV[k])}
    if dsn:
        try:
            given = conninfo_to_dict(dsn)
        except Exception as e:  # psycopg.ProgrammingError for a malformed string
            # libpq quotes pieces of the string back, and a piece may be a password.
            detail = "" if re.search(r"password|@", dsn, re.IGNORECASE) else f" ({driver_message(e)})"
            raise ConfigError(f"--dsn is not a libpq connection string or URL{detail}.") from None
        if given.get("password") or any(scrub(str(v)) != str(v) for v in given.values()):
            raise ConfigError("--dsn holds a password; remove it and set PGPASSWORD or use ~/.pgpass instead.")
        params.update(given)
    for key, value in env.postgres.conninfo_params().items():
        if scrub(str(value)) != str(value):  # e.g. dbname = "postgresql://me:secret@host/db"
            raise ConfigError(f"[{env.name}.postgres] {key} holds a password; remove it and set PGPASSWORD or use ~/.pgpass.")
    return make_conninfo("", **params)


def scrub(text: str) -> str:
    """`text` with every password-looking part masked, for messages: none may show a password.

    scrub("postgresql://me:secret@db/x") -> "postgresql://me:***@db/x"
    scrub("host=db password='a b'") -> "host=db password=***"
    """
    for pattern in SECRETS:
        text = pattern.sub(r"\1***", text)
    return text


def driver_message(error: BaseException) -> str:
    """The first line of a driver's error, scrubbed of passwords, for quoting in ours."""
    return scrub(first_line(error))


@contextlib.contextmanager
def connect(info: str) -> Iterator[psycopg.Connection[Any]]:
    """A connection for `info` (see conninfo); ExportError saying why when there is none."""
    import psycopg

    try:
        conn = psycopg.connect(info, connect_timeout=10, application_name="funnel")
    except psycopg.OperationalError as e:
        raise ExportError(scrub(_connection_problem(e, info))) from None
    try:
        yield conn
    finally:
        conn.close()


def export_postgres(
    manifest: Manifest,
    dsn: str | None = None,
    select: str | None = None,
    on_table: Callable[[Exported], None] | None = None,
    on_published: Callable[[], None] | None = None,
) -> list[Exported]:
    """Copy the selected models (default: reporting) into PostgreSQL, atomically.

    Tables are loaded into a side schema (large ones over several connections at once),
    then swapped into the environment's schema in one transaction. The side schema is
    guarded by an advisory lock held for the whole export: a later export drops side
    schemas whose lock is free, i.e. those of exports that died.
    """
    import psycopg

    env = manifest.env
    names = selected(manifest, select)
    side = f"_funnel_load_{os.getpid()}_{secrets.token_hex(3)}"
    done: list[Exported] = []
    info = conninfo(env, dsn)
    with database.read(env) as duck, connect(info) as pg, scratch_folder(env) as tmp:
        try:
            pg.autocommit = True
            _drop_abandoned_side_schemas(pg)
            pg.execute("select pg_advisory_lock(hashtext(%s))", [side])
            pg.execute(f"create schema if not exists {quote_ident(env.schema)}")
            pg.execute(f"create schema {quote_ident(side)}")
            pg.execute(f"comment on schema {quote_ident(side)} is {quote_literal(f'funnel export into {env.schema}')}")
            for name in names:
                started = time.perf_counter()
                rows = _load_table(duck, pg, info, env.schema, side, name, tmp)
                done.append(Exported(name, rows, time.perf_counter() - started))
                if on_table:
                    on_table(done[-1])
            pg.autocommit = False
            _swap_all(
                pg,
                side,
                env.schema,
                names,
                env.postgres.lock_timeout,
                f"[{env.name}.postgres] of {manifest.config.config_path}",
                {name: f"funnel: {counted_with(duck, name)}" for name in names},
                on_published,
            )
        except psycopg.errors.InsufficientPrivilege as e:
            raise ExportError(
                f"PostgreSQL refused ({driver_message(e)}); grant the user CREATE on the database or "
                "schema, or connect as another user with --dsn. The previous tables are unchanged."
            ) from None
        except psycopg.OperationalError as e:
            raise ExportError(
                f"PostgreSQL connection lost during the export ({driver_message(e)}); the previous tables are unchanged."
            ) from None
        except psycopg.Error as e:
            raise ExportError(f"PostgreSQL: {driver_message(e)}; the previous tables are unchanged.") from None
        finally:
            _drop_side_schema(pg, side)
    return done


def _drop_abandoned_side_schemas(pg: psycopg.Connection[Any]) -> None:
    rows = pg.execute("select nspname from pg_namespace where nspname like '\\_funnel\\_load\\_%'").fetchall()
    for (name,) in rows:
        got = pg.execute("select pg_try_advisory_lock(hashtext(%s))", [name]).fetchone()
        if got and got[0]:
            pg.execute(f"drop schema if exists {quote_ident(name)} cascade")
            pg.execute("select pg_advisory_unlock(hashtext(%s))", [name])


def _drop_side_schema(pg: psycopg.Connection[Any], side: str) -> None:
    """Best effort: what is left is dropped by the next export."""
    import psycopg

    with contextlib.suppress(psycopg.Error):
        if pg.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            pg.rollback()
        pg.autocommit = True
        pg.execute(f"drop schema if exists {quote_ident(side)} cascade")


def _load_table(
    duck: duckdb.DuckDBPyConnection,
    pg: psycopg.Connection[Any],
    info: str,
    schema: str,
    side: str,
    name: str,
    tmp: Path,
) -> int:
    """Create side.name and fill it; large tables go in parts over parallel connections."""
    built = columns(duck, schema, name)
    definition = ", ".join(f"{quote_ident(c)} {pg_type(t, f'{name}.{c}')}" for c, t in built)
    target = relation(side, name)
    pg.execute(f"create table {target} ({definition})")
    source = relation(schema, name)
    count_row = duck.execute(f"select count(*) from {source}").fetchone()
    rows = int(count_row[0]) if count_row else 0
    parts = PARALLEL_COPIES if rows >= PARALLEL_FROM_ROWS else 1
    folder = tmp / name
    # DuckDB writes one CSV per part in a single pass; a part column decides where a row goes.
    duck.execute(
        f"copy (select *, (row_number() over ()) % {parts} as _funnel_part from {source}) "
        f"to {quote_literal(str(folder))} (format csv, header false, partition_by (_funnel_part))"
    )
    files = sorted(folder.rglob("*.csv"))
    if len(files) <= 1:
        for path in files:
            _copy_file(pg, target, path)
    else:
        _copy_parallel(info, target, files)
    return rows


def _copy_file(pg: psycopg.Connection[Any], target: str, path: Path) -> None:
    with pg.cursor() as cur, cur.copy(f"copy {target} from stdin (format csv)") as copy, path.open("rb") as f:
        while chunk := f.read(CHUNK):
            copy.write(chunk)


def _copy_parallel(info: str, target: str, files: list[Path]) -> None:
    """One connection and one thread per file; psycopg releases the GIL while it sends."""
    from concurrent.futures import ThreadPoolExecutor

    import psycopg

    def load(path: Path) -> None:
        with psycopg.connect(info, connect_timeout=10, application_name="funnel") as conn, conn.transaction():
            _copy_file(conn, target, path)

    with ThreadPoolExecutor(len(files)) as pool:
        for future in [pool.submit(load, path) for path in files]:
            future.result()


def _swap_all(
    pg: psycopg.Connection[Any],
    side: str,
    schema: str,
    names: list[str],
    deadline: float,
    config: str,
    comments: dict[str, str],
    on_published: Callable[[], None] | None = None,
) -> None:
    """Swap every table in one transaction, holding up the tables' readers for a second at most.

    The transaction first locks every existing table (ACCESS EXCLUSIVE). While that request
    waits for a reader's lock, PostgreSQL queues every new reader behind it; so each try
    waits LOCK_TRY_SECONDS at most, then rolls back to let the queue through, and the export
    gives up after `deadline` seconds naming the sessions that hold the tables.
    """
    import psycopg

    tables = [relation(schema, name) for name in names]
    give_up = time.monotonic() + deadline
    while True:
        wait = min(LOCK_TRY_SECONDS, max(give_up - time.monotonic(), 0.01))
        try:
            # Ctrl-C waits for this try to commit or roll back, so that what the caller then
            # says about the PostgreSQL tables is true.
            with atomic.signals_deferred():
                with pg.transaction():
                    pg.execute("select set_config('lock_timeout', %s, true)", [f"{int(wait * 1000)}ms"])
                    existing = [t for t in tables if _exists(pg, t)]
                    if existing:
                        pg.execute(f"lock table {', '.join(existing)} in access exclusive mode")
                    for name in names:
                        _swap(pg, side, schema, name)
                        # Each table says how it counts: its definitions, its pipeline (query.counted_with).
                        pg.execute(f"comment on table {relation(schema, name)} is {quote_literal(comments[name])}")
                    pg.execute(f"drop schema {quote_ident(side)}")
                if on_published:
                    on_published()
            return
        except psycopg.errors.LockNotAvailable:
            if time.monotonic() >= give_up:
                raise ExportError(
                    f"PostgreSQL tables {', '.join(f'{schema}.{n}' for n in names)} stayed locked for {deadline:g}s "
                    f"by {_lock_holders(pg, tables)}; gave up, the previous tables are unchanged. End that "
                    f"session, or raise lock_timeout in {config}, and export again."
                ) from None
            time.sleep(LOCK_PAUSE_SECONDS)


def _exists(pg: psycopg.Connection[Any], table: str) -> bool:
    row = pg.execute("select to_regclass(%s) is not null", [table]).fetchone()
    return bool(row and row[0])


def _lock_holders(pg: psycopg.Connection[Any], tables: list[str]) -> str:
    """Who holds a lock on `tables`, as PostgreSQL tells it (pid, application, state, since)."""
    rows = pg.execute(
        "select distinct a.pid, a.application_name, a.state, a.query_start from pg_locks l "
        "join pg_stat_activity a on a.pid = l.pid "
        "where l.locktype = 'relation' and l.granted and l.pid <> pg_backend_pid() "
        "and l.relation = any(select to_regclass(t) from unnest(%s::text[]) as t) order by a.pid",
        [tables],
    ).fetchall()
    if not rows:
        return "another session (gone by now; PostgreSQL no longer says which)"
    return "; ".join(
        f"session pid {pid} (application_name {_printable(app)!r}, state {state}, query started {started:%Y-%m-%d %H:%M:%S %Z})"
        if started
        else f"session pid {pid} (application_name {_printable(app)!r}, state {state})"
        for pid, app, state, started in rows[:3]
    )


def _printable(text: str | None) -> str:
    """A server-sent name made safe for a one-line message."""
    return "".join(c if c.isprintable() else "?" for c in (text or ""))[:60]


def _swap(pg: psycopg.Connection[Any], side: str, schema: str, name: str) -> None:
    """Replace schema.name by side.name. Views that BI tools built on the table survive."""
    import psycopg

    old, new = relation(schema, name), relation(side, name)
    try:
        with pg.transaction():  # a savepoint
            pg.execute(f"drop table if exists {old}")
            pg.execute(f"alter table {new} set schema {quote_ident(schema)}")
    except psycopg.errors.DependentObjectsStillExist:
        # Views depend on the table: keep it (and its grants) and replace its rows.
        _replace_rows(pg, side, schema, name)


def _replace_rows(pg: psycopg.Connection[Any], side: str, schema: str, name: str) -> None:
    """Give schema.name the columns and rows of side.name, by column name, under its views.

    Columns the views use must stay with their type; the others follow the model: a column
    the model no longer has is dropped, a new one added (at the end), a changed type changed.
    """
    old, new = relation(schema, name), relation(side, name)
    before, after = _pg_columns(pg, schema, name), dict(_pg_columns(pg, side, name))
    used = _view_columns(pg, old)
    problems, views = [], set()
    for column, kind in before:
        if column in used and after.get(column) != kind:
            problems.append(f"{column} {kind} becomes {after[column]}" if column in after else f"{column} is gone")
            views.update(used[column])
    if problems:
        raise ExportError(
            f"{schema}.{name}: views {', '.join(sorted(views))} use columns the new build changes "
            f"({', '.join(problems)}); change or drop those views, or keep the columns in the model, "
            "then export again. The previous tables are unchanged."
        )
    pg.execute(f"truncate {old}")
    for column, kind in before:
        if column not in after:
            pg.execute(f"alter table {old} drop column {quote_ident(column)}")
        elif after[column] != kind:
            pg.execute(f"alter table {old} alter column {quote_ident(column)} type {after[column]} using null")
    names = [c for c, _ in before]
    for column, kind in after.items():
        if column not in names:
            pg.execute(f"alter table {old} add column {quote_ident(column)} {kind}")
    listed = ", ".join(quote_ident(c) for c in after)
    pg.execute(f"insert into {old} ({listed}) select {listed} from {new}")
    pg.execute(f"drop table {new}")


def _pg_columns(pg: psycopg.Connection[Any], schema: str, name: str) -> list[tuple[str, str]]:
    """(column, type as PostgreSQL spells it) of a table, in order."""
    rows = pg.execute(
        "select attname, format_type(atttypid, atttypmod) from pg_attribute "
        "where attrelid = to_regclass(%s) and attnum > 0 and not attisdropped order by attnum",
        [relation(schema, name)],
    ).fetchall()
    return [(column, kind) for column, kind in rows]


def _view_columns(pg: psycopg.Connection[Any], table: str) -> dict[str, list[str]]:
    """{column: [schema.view, ...]}: which views (and materialized views) use which column."""
    rows = pg.execute(
        "select a.attname, n.nspname || '.' || v.relname from pg_depend d "
        "join pg_rewrite r on r.oid = d.objid join pg_class v on v.oid = r.ev_class "
        "join pg_namespace n on n.oid = v.relnamespace "
        "join pg_attribute a on a.attrelid = d.refobjid and a.attnum = d.refobjsubid "
        "where d.classid = 'pg_rewrite'::regclass and d.refclassid = 'pg_class'::regclass "
        "and d.refobjid = to_regclass(%s) and d.refobjsubid > 0 and v.oid <> d.refobjid",
        [table],
    ).fetchall()
    used: dict[str, list[str]] = {}
    for column, view in rows:
        used.setdefault(column, []).append(view)
    return used


def _connection_problem(e: Exception, info: str) -> str:
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(info)
    host = params.get("host") or os.environ.get("PGHOST") or "localhost"
    port = params.get("port") or os.environ.get("PGPORT") or "5432"
    user = params.get("user") or os.environ.get("PGUSER") or "the current user"
    text = str(e).lower()
    if "password authentication failed" in text or "no password supplied" in text:
        return (
            f"PostgreSQL at {host}:{port} refused user {user}: wrong or missing password; set PGPASSWORD or add it to ~/.pgpass."
        )
    if "does not exist" in text and "database" in text:
        return f"PostgreSQL at {host}:{port}: {driver_message(e)}; create it or set dbname in environments.toml or --dsn."
    if "does not exist" in text and "role" in text:
        return f"PostgreSQL at {host}:{port}: {driver_message(e)}; set user in environments.toml, PGUSER or --dsn."
    return (
        f"cannot connect to PostgreSQL at {host}:{port} ({driver_message(e)}); "
        "start the server or point environments.toml, PGHOST/PGPORT or --dsn at one."
    )
