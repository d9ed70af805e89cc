"""The `funnel` command: typer and rich live here only; each module is one group of commands.

The command modules are imported in the order `funnel --help` lists their commands.
"""

# isort: off
from funnel.cli import build, show, project, steps, export, docs, env  # noqa: F401  (registers the commands)

# isort: on
from funnel.cli.app import app, main

__all__ = ["app", "main"]
