"""The `funnel` command: parse options, call one core function, show the result."""

from __future__ import annotations

import functools
import os
import signal
import sys
import time
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

app = typer.Typer(
    help="Turn a Pipedrive CSV export into a monthly sales-funnel report.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain click output for help and usage errors: an `Error: ...` line like every other
    # failure, and no rich import just to print help.
    rich_markup_mode=None,
)

F = TypeVar("F", bound=Callable[..., Any])
INTERRUPTED = "Interrupted; the last good build is unchanged"


class Format(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


def _selector(value: str | None) -> str | None:
    from funnel.errors import ConfigError
    from funnel.models import parse_selector

    if value is not None:
        try:
            parse_selector(value)
        except ConfigError as e:
            raise typer.BadParameter(str(e).removeprefix("--select: ")) from None
    return value


EnvOption = Annotated[str, typer.Option("--env", "-e", help="Environment from environments.toml.")]
SelectOption = Annotated[
    str | None,
    typer.Option(
        "--select",
        "-s",
        help="Models: NAME, NAME+ (with downstream), +NAME (with upstream) or a layer.",
        callback=_selector,
    ),
]


def _month(value: str | None) -> str | None:
    from funnel.report import MONTH

    if value is not None and not MONTH.fullmatch(value):
        raise typer.BadParameter(f"'{value}' is not a month; use YYYY-MM, e.g. 2024-02.")
    return value


def handle_errors(command: F) -> F:
    """Turn expected failures into one `Error:` line and exit 1; Ctrl-C into exit 130."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from funnel.console import error
        from funnel.errors import FunnelError

        try:
            return command(*args, **kwargs)
        except KeyboardInterrupt:
            print(INTERRUPTED, file=sys.stderr)
            raise typer.Exit(130) from None
        except typer.Exit:
            raise
        except Exception as e:
            if _signals_received:
                # DuckDB turns a signal that arrives mid-query into an error of its own.
                print(INTERRUPTED, file=sys.stderr)
                raise typer.Exit(130) from None
            if isinstance(e, FunnelError):
                error(str(e))
                raise typer.Exit(1) from None
            if isinstance(e, BrokenPipeError):
                # The reader of our stdout (`| head`) has had enough: that is not an error.
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                raise typer.Exit(0) from None
            if isinstance(e, OSError):
                where = f"{e.filename}: " if e.filename else ""
                error(f"{where}{e.strerror or e}; check the path and its permissions.")
                raise typer.Exit(1) from None
            raise

    return wrapper  # type: ignore[return-value]


def _project_env(env: str, raw_data: Path | None = None) -> tuple[Any, Any]:
    from funnel.config import load_project

    project = load_project()
    return project, project.environment(env, raw_data)


@app.command()
@handle_errors
def build(
    env: EnvOption = "dev",
    select: SelectOption = None,
    raw_data: Annotated[
        Path | None, typer.Option("--raw-data", help="Folder with the six CSVs (or set FUNNEL_RAW_DATA).")
    ] = None,
    wait: Annotated[float, typer.Option(help="Seconds to wait for another build of this env.", min=0)] = 0,
) -> None:
    """Load, transform and test an export; publish it atomically.

    Sources, seeds, staging, intermediate and reporting models, then data tests, in a
    temporary file that replaces the last build only if nothing failed.
    """
    from funnel import console
    from funnel.build import build as run_build

    project, environment = _project_env(env, raw_data)
    console.info(f"Building env [bold]{environment.name}[/] from {environment.raw_data}")
    result = run_build(project, environment, select, wait, console.step_line, console.test_line)
    console.build_summary(result)


@app.command()
@handle_errors
def test(env: EnvOption = "dev") -> None:
    """Run the data tests on the last build.

    Exit 1 if a test of severity error fails.
    """
    from funnel import console
    from funnel.build import run_tests

    project, environment = _project_env(env)
    results = run_tests(project, environment, console.test_line)
    console.info(f"Tests on env {environment.name}: {console.test_summary(results)}")
    if any(r.status == "ERROR" for r in results):
        raise typer.Exit(1)


@app.command()
@handle_errors
def show(
    env: EnvOption = "dev",
    month: Annotated[str | None, typer.Option(help="Only this month, YYYY-MM.", callback=_month)] = None,
    model: Annotated[str, typer.Option(help="Model to show.")] = "rep_sales_funnel_monthly",
    format: Annotated[Format, typer.Option("--format", "-f", help="table, csv or json.")] = Format.table,
    compare: Annotated[str | None, typer.Option(help="Another env to put side by side, with the difference.")] = None,
    summary: Annotated[
        bool, typer.Option("--summary", help="After the month's funnel: conversion, days in stage, top lost reasons.")
    ] = False,
) -> None:
    """Print a model of the last build.

    The monthly funnel by default, in funnel order. --summary adds, for the month (default:
    the latest), each stage step's conversion and median days and the top lost reasons.
    """
    from funnel import console, report

    if summary and (format != Format.table or compare or model != report.DEFAULT_MODEL):
        raise typer.BadParameter("--summary is a table of the funnel; use it without --format, --model and --compare.")
    project, environment = _project_env(env)
    if summary:
        console.print_summary(report.summary(environment, month))
        return
    if compare:
        table = report.compare(environment, project.environment(compare), model, month)
    else:
        table = report.show(environment, model, month)
    console.print_table(table, format.value)


@app.command()
@handle_errors
def models(
    env: EnvOption = "dev",
    format: Annotated[Format, typer.Option("--format", "-f", help="table, csv or json.")] = Format.table,
) -> None:
    """List models, layers and dependencies."""
    from funnel import console
    from funnel.manifest import compile_project
    from funnel.report import Table

    project, environment = _project_env(env)
    dag, _ = compile_project(project.sql_dir, environment.schema, environment.database.parent)
    rows = [
        (m.name, m.layer, m.materialized, ", ".join(m.refs) or ", ".join(f"source {s}" for s in m.sources) or "—")
        for m in (dag.models[n] for n in dag.order)
    ]
    console.print_table(Table(("model", "layer", "materialized", "depends on"), rows, "models in run order"), format.value)


@app.command()
@handle_errors
def generate(
    deals: Annotated[int, typer.Option(help="How many deals.", min=1)] = 2000,
    seed: Annotated[int, typer.Option(help="Same seed, same files (byte for byte).", min=0)] = 42,
    out: Annotated[Path, typer.Option(help="Folder for the six CSVs.")] = Path("raw_data"),
) -> None:
    """Write a realistic Pipedrive-format export.

    The defaults write the sample bundled in raw_data/.
    """
    from funnel import console
    from funnel.generate import generate as run_generate

    with console.progress_bar("generating") as on_progress:
        counts = run_generate(out, deals=deals, seed=seed, on_progress=on_progress)
    console.info(f"Wrote {out}: " + ", ".join(f"{name} {rows:,} rows" for name, rows in counts.items()))


class ExportFormat(StrEnum):
    postgres = "postgres"
    csv = "csv"
    parquet = "parquet"


DsnOption = Annotated[
    str | None,
    typer.Option(help="libpq connection string or URL; overrides environments.toml and PG* variables. No password."),
]


@app.command()
@handle_errors
def export(
    env: EnvOption = "dev",
    dsn: DsnOption = None,
    select: SelectOption = None,
    format: Annotated[ExportFormat, typer.Option("--format", "-f", help="postgres, csv or parquet.")] = ExportFormat.postgres,
    out: Annotated[Path | None, typer.Option(help="Folder for csv/parquet files.")] = None,
) -> None:
    """Copy models to PostgreSQL, or write them as files.

    The reporting models by default (or --select), atomically: readers see the old
    tables or the new ones, never a mix.
    """
    from funnel import console
    from funnel import export as exporter

    project, environment = _project_env(env)
    started = time.perf_counter()
    if format == ExportFormat.postgres:
        if out is not None:
            raise typer.BadParameter("--out is for --format csv or parquet.", param_hint="--out")
        done = exporter.export_postgres(project, environment, dsn, select, console.export_line)
        where = f"PostgreSQL schema {environment.schema}"
    else:
        if out is None:
            raise typer.BadParameter(f"--format {format.value} needs --out DIR.", param_hint="--out")
        done = exporter.export_files(project, environment, out, format.value, select, console.export_line)
        where = str(out)
    console.info(
        f"Exported {len(done)} table(s), {sum(d.rows for d in done):,} rows to {where} in {time.perf_counter() - started:.2f}s"
    )


@app.command()
@handle_errors
def parity(env: EnvOption = "dev", dsn: DsnOption = None, select: SelectOption = None) -> None:
    """Compare PostgreSQL with the build, row for row.

    Exit 1 on any difference.
    """
    from funnel import console
    from funnel import export as exporter

    project, environment = _project_env(env)
    results = exporter.parity(project, environment, dsn, select)
    console.parity_report(results)
    if not all(r.ok for r in results):
        raise typer.Exit(1)


_signals_received: list[int] = []


def _interrupt(signum: int, frame: Any) -> None:
    _signals_received.append(signum)
    raise KeyboardInterrupt


def main() -> None:
    """Entry point of the `funnel` script and `python -m funnel`."""
    # Ctrl-C, and the SIGTERM of `kill`, timeouts and cron: clean up, say so, exit 130.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        app()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    else:
        code = 0
    # Every file and database is closed by now; skipping the interpreter's teardown of
    # DuckDB, typer and friends saves ~20 ms of a 0.2 s build.
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BrokenPipeError:
            pass
    os._exit(code)


if __name__ == "__main__":
    main()
