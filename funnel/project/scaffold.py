"""`funnel init DIR`: a new project of the user's own, from the example the package ships.

The example is the repository's own project (environments.toml, sql/ with the models,
tests, seeds and source declarations, and the generated sample export in raw_data/), so
`pipx install funnel && funnel init shop && cd shop && funnel build` works anywhere.
"""

from __future__ import annotations

import os
import shutil
from importlib import resources
from pathlib import Path

from funnel import atomic
from funnel.errors import ConfigError

PARTS = ("environments.toml", "sql", "raw_data")
GITIGNORE = "target/\n*.duckdb\n*.duckdb.wal\n"


def example_root() -> Path:
    """Where the installed package keeps the example project."""
    return Path(str(resources.files("funnel") / "example"))


def init(target: Path) -> list[Path]:
    """Write a new project into `target` (which must not exist or be empty); return what was written.

    The files appear together: they are copied into a hidden folder beside `target` that is
    renamed into place, so an interrupted init leaves nothing half-written.
    """
    source = example_root()
    missing = [p for p in PARTS if not (source / p).exists()]
    if missing:
        raise ConfigError(f"{source}: the installed package lacks {', '.join(missing)}; reinstall funnel.")
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ConfigError(f"{target}: already exists and is not an empty folder; choose a new folder name.")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}.funnel-init-{os.getpid()}"
    try:
        staging.mkdir()
        shutil.copy(source / "environments.toml", staging / "environments.toml")
        for folder in ("sql", "raw_data"):
            shutil.copytree(source / folder, staging / folder, ignore=shutil.ignore_patterns("__pycache__", ".*"))
        (staging / ".gitignore").write_text(GITIGNORE, encoding="utf-8")
        atomic.replace(staging, target)  # an existing target is empty: checked above
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return sorted(p for p in target.rglob("*") if p.is_file())
