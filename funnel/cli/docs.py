"""Commands that write pages: report, docs."""

import time
from pathlib import Path
from typing import Annotated

import typer

from funnel.cli.app import (
    EnvOption,
    _manifest,
    _month,
    _path,
    app,
    handle_errors,
)


@app.command()
@handle_errors
def report(
    env: EnvOption = "dev",
    month: Annotated[
        str | None,
        typer.Option(help="The month the page opens on, YYYY-MM (default: the latest complete month).", callback=_month),
    ] = None,
    out: Annotated[Path, typer.Option(parser=_path, help="The HTML file to write.")] = Path("report.html"),
) -> None:
    """Write the last build as one self-contained HTML file (charts, tables, data quality).

    Every month is in it (a month picker); it opens on --month, by default the latest
    complete month. It opens offline in any browser: nothing is fetched from the network.
    """
    from funnel.cli import console
    from funnel.outputs.html_report import write_report

    started = time.perf_counter()
    path = write_report(_manifest(env), month, out)
    console.info(f"Wrote {path} ({path.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - started:.2f}s")


@app.command()
@handle_errors
def docs(
    env: EnvOption = "dev",
    out: Annotated[
        Path | None, typer.Option(parser=_path, help="Folder for the site (default: target/docs in the project).")
    ] = None,
) -> None:
    """Write the project's documentation as a static page: lineage, models, columns, tests.

    Column types and test results come from the env's last build, when there is one. Then
    it lists the models and reporting columns that have no description yet.
    """
    from funnel.cli import console
    from funnel.outputs.html_docs import coverage, write_docs

    manifest = _manifest(env)
    path = write_docs(manifest, out or manifest.config.root / "target" / "docs")
    console.info(f"Wrote {path}")
    console.docs_coverage(coverage(manifest), manifest.config.root)
