"""Commands that read the last build: show, models."""

from typing import TYPE_CHECKING, Annotated

import typer

from funnel import names
from funnel.cli.app import (
    EnvOption,
    Format,
    _known_env,
    _manifest,
    _month,
    _quoted,
    app,
    handle_errors,
)

if TYPE_CHECKING:
    from funnel.project.config import Environment


def _model_name(value: str | None) -> str | None:
    if value is None:
        return None
    from funnel.project.config import IDENTIFIER

    if not IDENTIFIER.fullmatch(value):
        raise typer.BadParameter(f"{_quoted(value)} is not a model name (letters, digits, _).")
    return value


SHOW_LIMIT = 50  # rows of the table view; csv and json give every row unless --limit says otherwise


@app.command()
@handle_errors
def show(
    env: EnvOption = "dev",
    month: Annotated[str | None, typer.Option(help="Only this month, YYYY-MM.", callback=_month)] = None,
    since: Annotated[str | None, typer.Option("--from", help="From this month on, YYYY-MM.", callback=_month)] = None,
    until: Annotated[str | None, typer.Option("--to", help="Up to this month, YYYY-MM (inclusive).", callback=_month)] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help=f"Model to show (default: {names.SALES_FUNNEL}; {names.PIPELINE_FUNNEL} with several pipelines).",
            callback=_model_name,
        ),
    ] = None,
    format: Annotated[Format, typer.Option("--format", "-f", help="table, csv or json.")] = Format.table,
    limit: Annotated[
        int | None, typer.Option(help=f"At most N rows; 0 for all (default: {SHOW_LIMIT} in a table, all in csv/json).", min=0)
    ] = None,
    compare: Annotated[str | None, typer.Option(help="Another env to put side by side, with the difference.")] = None,
    pipeline: Annotated[str | None, typer.Option(help="Only this pipeline's funnel (from rep_pipeline_funnel_monthly).")] = None,
    summary: Annotated[
        bool,
        typer.Option(
            "--summary",
            help="After the month's funnel: conversion, days in stage, top lost reasons, win rate, won value, "
            "open pipeline, sales cycle.",
        ),
    ] = False,
) -> None:
    """Print a model of the last build.

    The monthly funnel by default, in funnel order; other models in their own order. When
    the build has more than one pipeline, the funnel is every pipeline's, with a pipeline
    column (rep_pipeline_funnel_monthly); --pipeline NAME keeps one.
    --summary adds, for the month (default: the latest complete one; a month the export
    ends during is marked "(incomplete)"), each stage step's conversion and median days
    and the top lost reasons, of the pipeline the build counts (the var pipeline;
    --pipeline is refused there); then win rate by month added and won value per
    month and currency (the month and the five before it), the open and weighted pipeline
    by step at the month's end, and the sales cycle (from deals.csv).
    """
    from funnel.cli import tables
    from funnel.outputs import query as report

    if summary and (format != Format.table or compare or model not in (None, report.DEFAULT_MODEL)):
        raise typer.BadParameter("--summary is a table of the funnel; use it without --format, --model and --compare.")
    if summary and (since or until):
        raise typer.BadParameter("--summary is of one month; give it --month, not --from/--to.")
    if month and (since or until):
        raise typer.BadParameter("give either --month or --from/--to.", param_hint="'--month'")
    if since and until and since > until:
        raise typer.BadParameter(f"--from {since} is after --to {until}.", param_hint="'--from'")
    manifest = _manifest(env)
    chosen = model or report.DEFAULT_MODEL
    if chosen not in manifest.graph.models:
        from funnel.errors import did_you_mean

        raise typer.BadParameter(
            f"no model {_quoted(chosen)} in the project." + did_you_mean(chosen, list(manifest.graph.models)),
            param_hint="'--model'",
        )
    if summary and pipeline is not None:
        counted = report.counted(manifest.env)
        raise typer.BadParameter(
            f"--summary counts the pipeline the build counts ({counted or 'one unnamed pipeline'}) and lists every "
            f"pipeline's deals; drop --pipeline, or build with --var 'pipeline={pipeline}' to summarise {_quoted(pipeline)}.",
            param_hint="'--pipeline'",
        )
    if summary:
        from funnel.cli.summary import print_deal_summary
        from funnel.outputs.manager import deal_summary

        shown = report.summary(manifest.env, month)
        tables.print_summary(shown)
        print_deal_summary(deal_summary(manifest.env, shown.month, shown.label))
        return
    months = report.Months(since, until) if since or until else report.Months.one(month)
    if pipeline is not None and (compare or model not in (None, report.PIPELINE_FUNNEL)):
        raise typer.BadParameter(
            f"--pipeline picks a pipeline of {report.PIPELINE_FUNNEL}; use it without --compare and other models.",
            param_hint="'--pipeline'",
        )
    if compare:
        other = manifest.config.environment(_known_env(manifest.config, compare, "--compare"))
        table = report.compare(manifest.env, other, chosen, months)
    else:
        rows = SHOW_LIMIT if limit is None and format == Format.table else (limit or None)
        table = report.show(manifest.env, _pipeline_model(manifest.env, model, pipeline), months, rows, pipeline)
    tables.print_table(table, format.value)


def _pipeline_model(env: "Environment", model: str | None, pipeline: str | None) -> str:
    """The model show prints: --model's; without it the funnel, every pipeline's when the build has several."""
    from funnel.outputs import query as report

    if model is not None and pipeline is None:
        return model
    found = report.pipelines(env)
    if pipeline is not None and pipeline not in found:
        from funnel.errors import did_you_mean

        known = f" (its pipelines: {', '.join(map(_quoted, found))})" if found else " (it names no pipelines)"
        raise typer.BadParameter(
            f"no pipeline {_quoted(pipeline)} in the build{known}." + did_you_mean(pipeline, found),
            param_hint="'--pipeline'",
        )
    return report.PIPELINE_FUNNEL if pipeline is not None or len(found) > 1 else report.DEFAULT_MODEL


@app.command()
@handle_errors
def models(
    env: EnvOption = "dev",
    format: Annotated[Format, typer.Option("--format", "-f", help="table, csv or json.")] = Format.table,
) -> None:
    """List models, layers and dependencies."""
    from funnel.cli import tables
    from funnel.outputs.query import Table

    manifest = _manifest(env)
    dag = manifest.graph
    source_of = {s.table: s.source_name for s in manifest.sources}
    # depends_on: the models a model refs, and the sources it reads as <source>.<table>
    rows = [
        (m.name, m.layer, m.materialized, (*m.refs, *(f"{source_of[s]}.{s}" for s in m.sources)))
        for m in (dag.models[n] for n in dag.order)
    ]
    table = Table(("model", "layer", "materialized", "depends_on"), rows, "models in run order")
    tables.print_table(table, format.value, compact=True)
