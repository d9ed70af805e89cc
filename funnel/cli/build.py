"""Commands that build and check an env: build, test, compile."""

import sys
from pathlib import Path
from typing import Annotated

import typer

from funnel.cli.app import (
    UNCHANGED,
    EnvOption,
    ExcludeOption,
    SelectOption,
    VarOption,
    _finite,
    _interrupted_means,
    _manifest,
    _path,
    app,
    handle_errors,
)


@app.command()
@handle_errors
def build(
    env: EnvOption = "dev",
    select: SelectOption = None,
    raw_data: Annotated[
        Path | None, typer.Option("--raw-data", parser=_path, help="Folder with the six CSVs (or set FUNNEL_RAW_DATA).")
    ] = None,
    wait: Annotated[float, typer.Option(help="Seconds to wait for another build of this env.", min=0, callback=_finite)] = 0,
    pull: Annotated[bool, typer.Option("--pull", help="First pull the export from the Pipedrive API (see funnel pull).")] = False,
    full_refresh: Annotated[bool, typer.Option("--full-refresh", help="Reload every source and run every model.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan (what would load, run and why) and stop.")] = False,
    exclude: ExcludeOption = None,
    var: VarOption = None,
) -> None:
    """Plan, load, transform and test an export; publish it atomically.

    Only what changed is reloaded and rerun: a changed source and everything downstream of
    it, edited models and what depends on them. Nothing changed: nothing is written. The
    work happens in a temporary file that replaces the last build only if nothing failed.
    """
    from funnel.build import runner as builder
    from funnel.cli import console

    manifest = _manifest(env, raw_data, var, select, exclude)
    environment = manifest.env
    if pull:
        from funnel.build.runner import require_replaceable
        from funnel.cli.export import _pull_into

        require_replaceable(environment)  # before the pull: a build that cannot publish pulls nothing
        _pull_into(manifest.config, environment.export_folder())
    if environment.engine == "spark" and (select or exclude or full_refresh or dry_run):
        raise typer.BadParameter("a Spark env always builds everything; drop --select, --full-refresh and --dry-run.")
    if dry_run:
        console.plan_lines(builder.make_plan(manifest, select, full_refresh, exclude), detail=True)
        return
    console.info(f"Building env [bold]{environment.name}[/] from ", str(environment.export_folder()))
    _interrupted_means(UNCHANGED)

    def published() -> None:
        _interrupted_means(f"Interrupted after the new build of env '{environment.name}' was published; it is complete")

    result = builder.build(
        manifest, select, wait, full_refresh, console.plan_lines, console.step_line, console.test_line, published, exclude
    )
    console.build_summary(result)


@app.command()
@handle_errors
def test(
    env: EnvOption = "dev",
    select: SelectOption = None,
    exclude: ExcludeOption = None,
    failures: Annotated[
        bool, typer.Option("--failures", help="Show the first rows that break each failing test (also of a failed build).")
    ] = False,
    limit: Annotated[int, typer.Option(help="Rows per failing test with --failures.", min=1)] = 5,
) -> None:
    """Run the data tests on the last build (those on the --select'ed models).

    Exit 1 if a test of severity error fails. With --failures after a build that failed its
    tests, the rows that stopped it are shown first (the last good build is unchanged).
    """
    from funnel import workdir
    from funnel.build.runner import run_tests
    from funnel.cli import console

    manifest = _manifest(env, select=select, exclude=exclude)
    if failures and (kept := workdir.load_failures(manifest.env)):
        console.info(f"The build of env {manifest.env.name} that failed at {kept['failed_at']} was stopped by:")
        console.failing_rows(kept["tests"])
    results, rows = run_tests(manifest, console.test_line, select, exclude, limit if failures else 0)
    if failures:
        console.info(f"On the last good build of env {manifest.env.name}:" if rows else "No test fails on the last good build.")
        console.failing_rows(rows)
    console.info(f"Tests on env {manifest.env.name}: {console.test_summary(results)}")
    if any(r.status == "ERROR" for r in results):
        raise typer.Exit(1)


@app.command("compile")
@handle_errors
def compile_command(
    env: EnvOption = "dev",
    select: SelectOption = None,
    exclude: ExcludeOption = None,
    var: VarOption = None,
    out: Annotated[
        Path | None, typer.Option(parser=_path, help="Write <model>.sql files into this folder instead of printing.")
    ] = None,
) -> None:
    """Print the rendered SQL of the selected models, and check that it parses.

    Jinja is rendered with the env's schema and vars; a syntax error names the model file
    and line. With --out, each model is written to OUT/<model>.sql.
    """
    from funnel.cli import console
    from funnel.project.models import syntax_errors

    manifest = _manifest(env, given_vars=var, select=select, exclude=exclude)
    names = [n for n in manifest.graph.select(select, exclude) if not manifest.graph.models[n].is_seed]
    problems = syntax_errors(manifest.graph, names)
    for problem in problems:
        console.error(problem)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    for name in names:
        model = manifest.graph.models[name]
        text = f"-- {name}: {model.materialized} from {model.path}\n{model.sql}\n"
        if out is None:
            sys.stdout.write(text + "\n")
        else:
            (out / f"{name}.sql").write_text(text, encoding="utf-8")
    if out is not None:
        console.info(f"Wrote {len(names)} compiled model(s) to {out}")
    if problems:
        raise typer.Exit(1)
