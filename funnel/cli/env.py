"""Commands about an env's files: status, clean."""

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from funnel.cli.app import (
    EnvOption,
    _known_env,
    _project_env,
    app,
    handle_errors,
)


class StatusFormat(StrEnum):
    text = "text"
    json = "json"


@app.command()
@handle_errors
def status(
    env: EnvOption = "dev",
    format: Annotated[StatusFormat, typer.Option("--format", "-f", help="text or json.")] = StatusFormat.text,
) -> None:
    """Where an environment stands: its files, last build, freshness, PostgreSQL.

    Like dbt debug, and more: the last build (when, from which export, rows, months,
    tests), whether a build now would change anything, and whether PostgreSQL answers.
    Anything missing is reported, not an error; only an unusable environments.toml is.
    """
    from funnel.cli import console
    from funnel.outputs.status import gather

    config, environment = _project_env(env)
    result = gather(config, environment)
    if format == StatusFormat.json:
        print(result.to_json())
    else:
        console.print_status(result)


@app.command()
@handle_errors
def clean(
    env: Annotated[str | None, typer.Option("--env", "-e", help="Only this environment (default: every one).")] = None,
) -> None:
    """Remove build outputs: databases, temporary files, caches, export scratch.

    Only what funnel wrote beside each env's database; never raw data. Refused while a
    build of the env is running.
    """
    from funnel import workdir
    from funnel.cli import console
    from funnel.project.config import load_config

    config = load_config()
    names = [_known_env(config, env)] if env else list(config.environments)
    removed = [item for name in names for item in workdir.clean(config.environments[name])]
    once: dict[Path, workdir.Removed] = {}  # envs sharing a folder each find what is kept there
    for item in removed:
        once.setdefault(item.path, item)
    removed = list(once.values())
    if not env:
        removed += workdir.clean_project(config)
    console.clean_report(removed, config.root)
