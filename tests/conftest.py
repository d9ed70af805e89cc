"""Shared fixtures: a throwaway copy of the project, so tests never touch build/ or raw_data/."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parent.parent
SHARED_RAW = REPO.parent / "shared" / "raw_data"
REFERENCE = REPO.parent / "shared" / "reference" / "rep_sales_funnel_monthly.csv"
DATA = Path(__file__).resolve().parent / "data"

ENVIRONMENTS = """\
[dev]
database = "target/dev.duckdb"
schema = "public_pipedrive_analytics"
raw_data = "raw_data"

[prod]
database = "target/prod.duckdb"
schema = "prod_pipedrive_analytics"
raw_data = "raw_data"
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the project's sql/ with the bundled sample, as the working directory."""
    root = tmp_path / "project"
    shutil.copytree(REPO / "sql", root / "sql")
    shutil.copytree(REPO / "raw_data", root / "raw_data")
    (root / "environments.toml").write_text(ENVIRONMENTS)
    monkeypatch.chdir(root)
    monkeypatch.delenv("FUNNEL_RAW_DATA", raising=False)
    monkeypatch.delenv("FUNNEL_PROJECT_DIR", raising=False)
    return root


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def built(project: Path, runner: CliRunner) -> Path:
    """The project after a successful `funnel build` of dev."""
    from funnel.cli import app

    result = runner.invoke(app, ["build"])
    assert result.exit_code == 0, result.output
    return project


def compiled(root: Path, env: str = "dev"):
    """The project under `root` compiled for `env`, as the CLI does it."""
    from funnel.config import load_config
    from funnel.manifest import compile

    config = load_config(root)
    return compile(config, config.environment(env))


def read_report(database: Path, schema: str = "public_pipedrive_analytics") -> list[tuple]:
    import duckdb

    with duckdb.connect(str(database), read_only=True) as con:
        return con.execute(f"select * from {schema}.rep_sales_funnel_monthly order by month, funnel_step").fetchall()


def reference_rows() -> list[tuple[str, str, str, int]]:
    with REFERENCE.open(newline="") as f:
        return [(r["month"], r["kpi_name"], r["funnel_step"], int(r["deals_count"])) for r in csv.DictReader(f)]


needs_shared_raw = pytest.mark.skipif(
    not SHARED_RAW.is_dir() or not REFERENCE.is_file(),
    reason="../shared/raw_data and ../shared/reference are not beside this checkout",
)
