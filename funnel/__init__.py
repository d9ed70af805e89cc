"""funnel: a Pipedrive CSV export in, a monthly sales-funnel report out, on a laptop.

`from funnel import Project` is the Python API (funnel/api.py); the `funnel` command is a
layer over the same core.
"""

from typing import Any

# The one place the version lives: pyproject.toml reads it from here (dynamic), the CLI and
# every build record print it. The distribution's name on the package index (`funnel` there
# is another project); the command stays `funnel`.
DISTRIBUTION = "pipedrive-funnel"
__version__ = "0.2.0"
__all__ = ["DISTRIBUTION", "Project", "__version__"]


def __getattr__(name: str) -> Any:
    # Imported on first use: every module imports funnel for __version__, the CLI among them.
    if name == "Project":
        from funnel.api import Project

        return Project
    raise AttributeError(f"module 'funnel' has no attribute {name!r}")
