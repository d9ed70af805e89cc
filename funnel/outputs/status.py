"""`funnel status`: where an environment stands, gathered into one value.

dbt's `debug` answers "is my setup right?"; this also answers "what is in my build, and is
it still current?": the project and its environments.toml, the env's database, what the
last build recorded about itself (when, which export, how many rows, the test counts),
whether a build now would change anything (the same plan `funnel build` makes), and
whether the env's PostgreSQL answers. Nothing here fails for something missing: it is
reported as missing. Only an unusable environments.toml stops `status`, before this runs.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

from funnel import __version__, names, workdir
from funnel.build import record as records
from funnel.engine import database
from funnel.errors import FunnelError, first_line
from funnel.project.config import Config, Environment
from funnel.quoting import relation

POSTGRES_TIMEOUT = 2  # seconds; libpq's smallest connect_timeout
REPORT = names.SALES_FUNNEL


@dataclass(frozen=True)
class SourceFile:
    """One file of the export the last build was made from, as the build fingerprinted it
    (`sha256` of the file's bytes, as sha256sum prints it)."""

    table: str
    path: str
    size: int | None
    sha256: str | None
    rows: int | None  # as loaded
    absent: bool = False  # an optional file the export does not have: an empty table


@dataclass(frozen=True)
class LastBuild:
    """What the committed build recorded about itself (`_funnel.build_info`)."""

    built_at: str | None
    funnel_version: str | None
    select: str | None  # None: every model
    full: bool | None
    seconds: float | None
    raw_data: str | None
    sources: list[SourceFile]
    first_month: str | None  # of the report, YYYY-MM
    last_month: str | None
    tests: dict[str, int]  # PASS, WARN, ERROR
    definitions: dict[str, Any] = field(default_factory=dict)  # the vars that differ from the defaults
    pipeline: str | None = None  # the one the models of names.ONE_PIPELINE count; None: one unnamed


@dataclass(frozen=True)
class Status:
    """Everything `funnel status` says about one environment; `problem` fields say why a part is unknown."""

    funnel_version: str
    project: str
    config_path: str
    env: str
    environments: list[str]
    raw_data: str | None  # the export a build would read now
    raw_data_from_build: bool  # the env names none: the one the last build read
    database: str
    database_exists: bool
    database_bytes: int | None  # the file and its write-ahead log
    build: LastBuild | None = None
    build_problem: str | None = None
    up_to_date: bool | None = None  # None: could not be decided (see plan_problem)
    plan: list[str] = field(default_factory=list)  # what a build would do now, as lines
    plan_problem: str | None = None
    postgres: str = "not configured"  # or "answers", "does not answer", "refused"
    postgres_target: str | None = None  # host:port/dbname as user; never a password
    postgres_problem: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def gather(config: Config, env: Environment) -> Status:
    """The status of `env` in the project `config` describes."""
    exists = env.database.is_file()
    build, build_problem = _last_build(env)
    raw_data: str | None
    from_build = False
    try:
        raw_data = str(env.export_folder())
    except FunnelError:
        # An env that names no export (prod) was built from one given on the command line:
        # whether the build is current is a question about that export.
        raw_data = build.raw_data if build else None
        from_build = raw_data is not None
        if from_build:
            env = config.environment(env.name, raw_data)
    up_to_date, plan_lines, plan_problem = _plan(config, env)
    postgres, target, postgres_problem = _postgres(env)
    return Status(
        funnel_version=__version__,
        project=str(config.root),
        config_path=str(config.config_path),
        env=env.name,
        environments=list(config.environments),
        raw_data=raw_data,
        raw_data_from_build=from_build,
        database=str(env.database),
        database_exists=exists,
        database_bytes=_size(env) if exists else None,
        build=build,
        build_problem=build_problem,
        up_to_date=up_to_date,
        plan=plan_lines,
        plan_problem=plan_problem,
        postgres=postgres,
        postgres_target=target,
        postgres_problem=postgres_problem,
    )


def _size(env: Environment) -> int:
    total = 0
    for path in (env.database, workdir.wal_path(env.database)):
        try:
            total += path.stat().st_size
        except OSError:
            pass
    return total


def _last_build(env: Environment) -> tuple[LastBuild | None, str | None]:
    import duckdb

    if not env.database.is_file():
        return None, f"no build yet; run funnel build --env {env.name}"
    try:
        with database.read(env) as con:
            found = records.read(con)
            if found is None:
                return None, "the build records nothing about itself; rebuild it with --full-refresh"
            try:
                months = con.execute(
                    f"select strftime(min(month), '%Y-%m'), strftime(max(month), '%Y-%m') from {relation(env.schema, REPORT)}"
                ).fetchone()
            except duckdb.Error:
                months = None
    except FunnelError as e:  # damaged, locked: it says what to do
        return None, str(e).rstrip(".")
    except (duckdb.Error, ValueError) as e:
        return None, f"the build cannot be read ({first_line(e)})"
    sources = [
        SourceFile(
            table=table,
            path=str(fp.get("path")),
            size=records.int_or_none(fp.get("size")),
            sha256=_sha256(fp),
            rows=found.source_rows.get(table),
            absent=fp.get("absent") is True,
        )
        for table, fp in found.fingerprints.items()
    ]
    return (
        LastBuild(
            built_at=found.built_at,
            funnel_version=found.funnel_version,
            select=found.select,
            full=found.full,
            seconds=found.seconds,
            raw_data=found.raw_data,
            sources=sources,
            first_month=months[0] if months else None,
            last_month=months[1] if months else None,
            tests={status: found.tests.get(status, 0) for status in records.STATUSES},
            definitions=found.non_default_vars(),
            pipeline=None if found.vars.get("pipeline") is None else str(found.vars["pipeline"]),
        ),
        None,
    )


def _plan(config: Config, env: Environment) -> tuple[bool | None, list[str], str | None]:
    """Whether a build now would do nothing, and what it would do: the build's own plan."""
    from funnel.build.plan import describe
    from funnel.build.runner import make_plan
    from funnel.project.manifest import compile

    try:
        plan = make_plan(compile(config, env))
    except FunnelError as e:
        return None, [], str(e)
    except OSError as e:
        return None, [], f"{e.filename or 'a file'}: {e.strerror or e}"
    return plan.up_to_date, describe(plan), None


def _postgres(env: Environment) -> tuple[str, str | None, str | None]:
    """Whether the env's PostgreSQL answers within POSTGRES_TIMEOUT seconds."""
    from funnel.outputs import postgres

    if not env.postgres.conninfo_params() and not any(os.environ.get(name) for name in postgres.PG_ENV.values()):
        return "not configured", None, None
    try:
        info = postgres.conninfo(env, None)
    except FunnelError as e:
        return "refused", None, str(e)
    target = _target(info)
    try:
        import psycopg

        with psycopg.connect(info, connect_timeout=POSTGRES_TIMEOUT, application_name="funnel status") as conn:
            conn.execute("select 1")
    except Exception as e:  # any failure to answer is what this reports, never a crash
        return "does not answer", target, postgres.driver_message(e)
    return "answers", target, None


def _target(info: str) -> str:
    from psycopg.conninfo import conninfo_to_dict

    params: dict[str, Any] = {**conninfo_to_dict(info)}
    host = params.get("host") or os.environ.get("PGHOST") or "localhost"
    port = params.get("port") or os.environ.get("PGPORT") or "5432"
    dbname = params.get("dbname") or os.environ.get("PGDATABASE") or "(default)"
    user = params.get("user") or os.environ.get("PGUSER") or "(current user)"
    return f"{host}:{port}/{dbname} as {user}"


def _sha256(fingerprint: dict[str, Any]) -> str | None:
    """The file's SHA-256 as the build recorded it; None for a record older than the
    declaration field, whose hash covered the size too (not what sha256sum prints)."""
    return records.str_or_none(fingerprint.get("sha256")) if "declaration" in fingerprint else None
