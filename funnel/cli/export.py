"""Commands that move data in or out: export, parity, pull."""

import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from funnel.cli.app import (
    EnvOption,
    SelectOption,
    _interrupted_means,
    _manifest,
    _path,
    _project_env,
    app,
    handle_errors,
)


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
    out: Annotated[Path | None, typer.Option(parser=_path, help="Folder for csv/parquet files.")] = None,
) -> None:
    """Copy models to PostgreSQL, or write them as files.

    The reporting models by default (or --select), atomically: readers see the old
    tables or the new ones, never a mix.
    """
    from funnel.cli import console
    from funnel.outputs import files, postgres

    manifest = _manifest(env, select=select)
    environment = manifest.env
    started = time.perf_counter()
    if format == ExportFormat.postgres:
        if out is not None:
            raise typer.BadParameter("--out is for --format csv or parquet.", param_hint="--out")
        _interrupted_means("Interrupted; the export stopped and the PostgreSQL tables are unchanged")

        def published() -> None:
            _interrupted_means("Interrupted after the export committed; the PostgreSQL tables are the new ones")

        done = postgres.export_postgres(manifest, dsn, select, console.export_line, published)
        where = f"PostgreSQL schema {environment.schema}"
    else:
        if out is None:
            raise typer.BadParameter(f"--format {format.value} needs --out DIR.", param_hint="--out")
        _interrupted_means(f"Interrupted; each file in {out} is either complete or untouched")
        done = files.export_files(manifest, out, format.value, select, console.export_line)
        where = str(out)
    console.info(
        f"Exported {len(done)} table(s), {sum(d.rows for d in done):,} rows to {where} in {time.perf_counter() - started:.2f}s"
    )


@app.command()
@handle_errors
def parity(
    env: EnvOption = "dev",
    dsn: DsnOption = None,
    select: SelectOption = None,
    against: Annotated[str | None, typer.Option(help="Another env: compare the two builds (every model) instead.")] = None,
) -> None:
    """Compare PostgreSQL with the build, row for row (or two builds, with --against).

    Exit 1 on any difference.
    """
    from funnel.cli import console
    from funnel.outputs.parity import DOUBLE_DIGITS, compare_builds
    from funnel.outputs.parity import parity as compare

    if against is not None and dsn is not None:
        raise typer.BadParameter("--dsn is for the comparison with PostgreSQL; drop it with --against.", param_hint="--dsn")
    manifest = _manifest(env, select=select)
    if against is not None:
        results = compare_builds(manifest, manifest.config.environment(against), select)
    else:
        results = compare(manifest, dsn, select)
    console.parity_report(results)
    for r in results:
        if r.widened:
            print(f"  {r.table}: {'; '.join(r.widened)} (the same kind, another width; compared by value)")
        if r.rounded:
            print(f"  {r.rounded:,} row(s) of {r.table} equal to {DOUBLE_DIGITS} significant digits in DOUBLE columns only")
    if not all(r.ok for r in results):
        raise typer.Exit(1)


def _since(value: str | None) -> str | None:
    from funnel.errors import FunnelError
    from funnel.pipedrive.folder import parse_since

    try:
        return None if value is None else parse_since(value)
    except FunnelError as e:
        raise typer.BadParameter(str(e)) from None


@app.command("pull")
@handle_errors
def pull_command(
    env: EnvOption = "dev",
    out: Annotated[Path | None, typer.Option(parser=_path, help="Folder for the CSVs (default: the env's raw_data).")] = None,
    since: Annotated[
        str | None,
        typer.Option(help="Only changes since this UTC time (2024-06-01T08:00:00Z), or 'last' (the last pull).", callback=_since),
    ] = None,
    budget: Annotated[int | None, typer.Option(help="Most API requests this pull may make (default 10,000).", min=1)] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Read the lists only and print what the pull would fetch and cost.")
    ] = False,
) -> None:
    """Fetch the six source files and deals.csv from the Pipedrive API.

    Token from PIPEDRIVE_API_TOKEN, address from [pipedrive] api_url or PIPEDRIVE_API_URL.
    The files replace the folder's export only when everything was fetched.
    """
    config, environment = _project_env(env)
    if dry_run:
        from funnel.pipedrive.estimate import estimate

        _print_estimate(estimate(config, out or environment.export_folder(), since, budget))
        return
    _pull_into(config, out or environment.export_folder(), since, budget)


def _print_estimate(e: Any) -> None:
    """What `funnel pull --dry-run` found, on stdout."""
    kept = f"{e.kept:,} kept from an earlier pull, {e.to_fetch:,} to fetch" if e.kept else f"{e.to_fetch:,} to fetch"
    what = f"changes since {e.since:%Y-%m-%d %H:%M} UTC" if e.since else "everything"
    print(f"Dry run: funnel pull of {what} from {e.api_url} into {e.out} (nothing written)")
    print(f"  deals           {e.deals:,} deal change logs ({kept})")
    print(f"  requests        about {e.requests:,}: {e.list_requests:,} list pages (as read now) and {e.to_fetch:,} change logs")
    print(f"  API tokens      about {e.tokens:,}: {e.list_tokens:,} for the lists, 40 a change log (Pipedrive's costs)")
    if e.allowed is None:
        share = "unknown: the API did not report today's budget (x-daily-ratelimit-token-remaining)"
    else:
        share = f"{e.allowed:,} tokens ([pipedrive] budget_share {e.share:g} of the {e.daily_left:,} left today)"
        if e.fits_share:
            share = f"fits: {share}"
        elif e.days is None:
            share = f"does not fit: {share}; not even the lists fit, try again tomorrow"
        else:
            share = (
                f"does not fit: {share}; about {e.days} days at this share (each run stops at it with exit 3, the next continues)"
            )
    print(f"  today's share   {share}")
    budget = f"{e.budget:,} requests"
    if e.fits_budget:
        budget = f"fits: {budget}"
    elif e.list_requests >= e.budget:
        budget = f"does not fit: {budget}, not even the lists; raise [pipedrive] request_budget or --budget"
    else:
        budget = f"does not fit: {budget}; the pull stops at it with exit 3, the next run continues"
    print(f"  request budget  {budget}")


def _pull_into(project: Any, out: Path, since: str | None = None, budget: int | None = None) -> None:
    from funnel.cli import console
    from funnel.cli.progress import duration, progress
    from funnel.errors import n_rows
    from funnel.pipedrive.client import PullStopped
    from funnel.pipedrive.pull import pull as run_pull

    _interrupted_means(f"Interrupted; the export in {out} is unchanged, and the next funnel pull continues where this one was")
    try:
        with progress("pulling") as on_progress:
            result = run_pull(project, out, since, budget, on_progress, on_notice=console.info)
    except PullStopped as e:
        console.info(f"[yellow]Stopped early, resume later[/]: {e}")
        raise typer.Exit(PullStopped.exit_code) from None
    what = f"changes since {result.since:%Y-%m-%d %H:%M} UTC" if result.since else "everything"
    console.info(
        f"Pulled {what} into {result.out}: "
        + ", ".join(f"{name} {n_rows(rows)}" for name, rows in result.rows.items())
        + f" ({result.requests:,} requests, about {result.tokens:,} API tokens, "
        + (f"{result.seconds:.1f}s)" if result.seconds < 60 else f"{duration(result.seconds)})")
    )
    if result.dropped_deals:
        console.info(
            f"Dropped {result.dropped_deals:,} deal(s) of the previous export that no longer exist in Pipedrive "
            "(deleted): their rows are gone from deal_changes.csv."
        )
    if result.dropped_activities:
        console.info(
            f"Dropped {result.dropped_activities:,} activit{'y' if result.dropped_activities == 1 else 'ies'} of the "
            "previous export that no longer exist in Pipedrive (deleted): their rows are gone from activity.csv."
        )
    if result.skipped_deals:
        console.info(
            f"[yellow]Skipped[/] {result.skipped_deals:,} deal(s) deleted while the pull ran: Pipedrive answered 404 for their "
            "change logs, so deal_changes.csv has no rows for them."
        )
