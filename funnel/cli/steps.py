"""`funnel steps`: the funnel's steps as the account's stages imply them."""

from pathlib import Path
from typing import Annotated, Any

import typer

from funnel.cli.app import EnvOption, _path, _project_env, app, handle_errors


@app.command()
@handle_errors
def steps(
    write: Annotated[bool, typer.Option("--write", help="Write sql/seeds/funnel_steps.csv from the export.")] = False,
    calls: Annotated[
        str | None,
        typer.Option(
            "--calls",
            metavar="TYPE,TYPE",
            help="Activity types counted as call steps, in order: the first after step 2 (2.1), the next after step 3 "
            "(3.1). Default: the call types of the project's steps that the export has.",
        ),
    ] = None,
    env: EnvOption = "dev",
    raw_data: Annotated[
        Path | None, typer.Option("--raw-data", parser=_path, help="Folder with the export (or set FUNNEL_RAW_DATA).")
    ] = None,
) -> None:
    """Show the export's pipelines and stages next to the project's funnel steps.

    Each mismatch is marked. --write replaces sql/seeds/funnel_steps.csv with one step per
    stage of each pipeline, in the pipeline's order, named `Step N: <stage name>`.
    """
    from funnel.errors import ConfigError
    from funnel.project.steps import steps as compare_steps

    config, environment = _project_env(env, raw_data)
    wanted = None if calls is None else [c.strip() for c in calls.split(",") if c.strip()]
    try:
        found = compare_steps(config.sql_dir, environment.export_folder(), wanted, write)
    except ConfigError as e:
        if not str(e).startswith("--calls: "):
            raise
        raise typer.BadParameter(str(e).removeprefix("--calls: "), param_hint="'--calls'") from None
    _print(found)


def _print(found: Any) -> None:
    """The steps per pipeline, the export's beside the project's, each mismatch marked."""
    from funnel.cli.console import printable

    def shown(step: Any) -> str:
        return f"{step.funnel_step:>4}  {step.kpi_name}" if step else "   -"

    pipelines = [p for p in found.pipelines if p]
    count = f"{len(found.stages)} stages" + (f" in {len(pipelines)} pipelines" if len(pipelines) > 1 else "")
    print(printable(f"{found.export / 'stages.csv'}: {count}; calls: {', '.join(found.calls) or 'none'}"))
    width = max([len(shown(line.derived)) for line in found.lines] + [len("from the export")]) + 2
    mine = max([len(shown(line.current)) for line in found.lines] + [len("in sql/seeds/funnel_steps.csv")]) + 2
    for pipeline in dict.fromkeys(line.pipeline for line in found.lines):
        print()
        if pipeline:
            print(printable(f"pipeline {pipeline}"))
        print(f"  {'from the export':<{width}}in sql/seeds/funnel_steps.csv")
        for line in found.lines:
            if line.pipeline == pipeline:
                mark = f"✗ {line.mismatch}" if line.mismatch else ""
                print(printable(f"  {shown(line.derived):<{width}}{shown(line.current):<{mine}}{mark}".rstrip()))
    print()
    if found.written:
        print(printable(f"Wrote {found.seed}: {len(found.derived)} steps. Next: funnel build"))
    elif found.differ:
        print(f"{found.differ} step(s) differ: funnel steps --write writes the export's steps.")
    else:
        print("The project's steps are the export's.")
