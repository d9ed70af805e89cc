"""Commands that start a project or an export: generate, init."""

from pathlib import Path
from typing import Annotated

import typer

from funnel.cli.app import (
    _interrupted_means,
    _path,
    app,
    handle_errors,
)


@app.command()
@handle_errors
def generate(
    deals: Annotated[int, typer.Option(help="How many deals.", min=1)] = 2000,
    seed: Annotated[int, typer.Option(help="Same seed, same files (byte for byte).", min=0)] = 42,
    out: Annotated[Path, typer.Option(parser=_path, help="Folder for the six CSVs, relative to the current folder.")] = Path(
        "raw_data"
    ),
    force: Annotated[bool, typer.Option("--force", help="Replace the CSVs already in --out.")] = False,
) -> None:
    """Write a realistic Pipedrive-format export.

    The defaults write the sample bundled in raw_data/ (with --force, since it exists).
    """
    from funnel.cli import console
    from funnel.errors import n_rows
    from funnel.pipedrive.sample import generate as run_generate

    _interrupted_means(f"Interrupted; {out} is unchanged")
    with console.progress_bar("generating") as on_progress:
        counts = run_generate(out, deals=deals, seed=seed, on_progress=on_progress, force=force)
    console.info(f"Wrote {out}: " + ", ".join(f"{name} {n_rows(rows)}" for name, rows in counts.items()))


@app.command()
@handle_errors
def init(folder: Annotated[Path, typer.Argument(parser=_path, help="New project folder (must not exist, or be empty).")]) -> None:
    """Start a new project: environments.toml, sql/ with the models and tests, a sample export.

    Then: cd FOLDER && funnel build && funnel show.
    """
    from funnel.cli import console
    from funnel.project.scaffold import init as write_project

    written = write_project(folder)
    console.info(f"Wrote {len(written)} files to {folder}: environments.toml, sql/, raw_data/ (a generated sample export)")
    console.info(f"Next: cd {folder} && funnel build && funnel show")
