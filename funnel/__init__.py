"""funnel: a Pipedrive CSV export in, a monthly sales-funnel report out, on a laptop.

`from funnel import Project` is the Python API (funnel/api.py); the `funnel` command is a
layer over the same core.
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["Project", "__version__"]


def __getattr__(name: str) -> Any:
    # Imported on first use: every module imports funnel for __version__, the CLI among them.
    if name == "Project":
        from funnel.api import Project

        return Project
    raise AttributeError(f"module 'funnel' has no attribute {name!r}")
