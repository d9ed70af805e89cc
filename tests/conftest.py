"""Shared fixtures: throwaway projects of their own, so tests never touch the repository's
target/, raw_data/ or sql/."""

from __future__ import annotations

import csv
import functools
import shutil
from pathlib import Path

import pytest
import typer.testing
from typer.testing import CliRunner

# typer builds the click command of the app again on every invoke (20 ms, most of it
# evaluating annotations); the suite invokes it hundreds of times, so it builds it once.
typer.testing._get_command = functools.cache(typer.testing._get_command)

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


TINY_DEALS = 60  # a tiny export: every model and quirk has rows, and a build takes a blink


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from funnel.pipedrive.sample import generate

    folder = tmp_path_factory.mktemp("tiny") / "raw_data"
    generate(folder, deals=TINY_DEALS, seed=5)
    return folder


def new_project(root: Path, monkeypatch: pytest.MonkeyPatch, export: Path | None = None) -> Path:
    """A project written by `funnel init` (the example the package ships), as the working
    directory, with dev and prod reading `export` (default: the bundled sample)."""
    from funnel.project.scaffold import init

    init(root)
    if export is not None:
        shutil.rmtree(root / "raw_data")
        shutil.copytree(export, root / "raw_data")
    (root / "environments.toml").write_text(ENVIRONMENTS)
    return work_in(root, monkeypatch)


def work_in(root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Make `root` the project the CLI finds: the working directory, no variable naming another."""
    monkeypatch.chdir(root)
    monkeypatch.delenv("FUNNEL_RAW_DATA", raising=False)
    monkeypatch.delenv("FUNNEL_PROJECT_DIR", raising=False)
    return root


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_export: Path) -> Path:
    """A new project with a tiny export of its own."""
    return new_project(tmp_path / "project", monkeypatch, tiny_export)


@pytest.fixture
def sample_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A new project with the bundled sample export (for figures shown in README and golden files)."""
    return new_project(tmp_path / "project", monkeypatch)


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def build_once(tmp_path_factory: pytest.TempPathFactory, export: Path | None) -> Path:
    """A project (with `export`, default the sample) after `funnel build` of dev, built once
    per session: tests get a copy of its target/ (`with_build_of`), not a build of their own."""
    from funnel.cli import app

    root = tmp_path_factory.mktemp("built") / "project"
    with pytest.MonkeyPatch.context() as mp:
        new_project(root, mp, export)
        result = CliRunner().invoke(app, ["build"])
    assert result.exit_code == 0, result.output
    return root


def with_build_of(template: Path, project: Path) -> Path:
    """`project` (the same sql/ and export as `template`) with a copy of the template's build.
    The copy is what a build of the project would publish: its next plan finds it up to date
    (the record names the template's files, but their contents are the same)."""
    import duckdb

    shutil.copytree(template / "target", project / "target", dirs_exist_ok=True)
    with duckdb.connect(str(project / "target" / "dev.duckdb")) as con:  # the record names the project's own files
        con.execute("update _funnel.build_info set info = replace(info, ?, ?)", [str(template), str(project)])
    return project


@pytest.fixture(scope="session")
def _sample_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_once(tmp_path_factory, None)


@pytest.fixture(scope="session")
def _tiny_build(tmp_path_factory: pytest.TempPathFactory, tiny_export: Path) -> Path:
    return build_once(tmp_path_factory, tiny_export)


@pytest.fixture
def sample_built(sample_project: Path, _sample_build: Path) -> Path:
    """The sample project after a successful `funnel build` of dev."""
    return with_build_of(_sample_build, sample_project)


@pytest.fixture
def built(project: Path, _tiny_build: Path) -> Path:
    """The project after a successful `funnel build` of dev."""
    return with_build_of(_tiny_build, project)


def compiled(root: Path, env: str = "dev"):
    """The project under `root` compiled for `env`, as the CLI does it."""
    from funnel.project.config import load_config
    from funnel.project.manifest import compile

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


def sampled(values: list, quick: set[str], ids: list[str] | None = None) -> list:
    """A table of cases as parameters: the ones whose id is in `quick` run in the default
    `pytest -q`, the others are marked slow (CI runs every case)."""
    names = ids if ids is not None else [str(v) for v in values]
    unknown = quick - set(names)
    assert not unknown, f"no such case: {sorted(unknown)}"
    return [
        pytest.param(*(v if isinstance(v, tuple) else (v,)), id=name, marks=() if name in quick else pytest.mark.slow)
        for v, name in zip(values, names, strict=True)
    ]


def pytest_terminal_summary(terminalreporter) -> None:
    """Name the models of sql/ that README's Models section does not: its examples ran
    without them (tests/readme_example.py), so one meant for the example shows here."""
    from .readme_example import unnamed

    left_out = unnamed(REPO / "README.md", REPO / "sql")
    if left_out:
        terminalreporter.write_line(
            f"README.md's Models section does not name {', '.join(left_out)}: its examples ran without "
            f"{'it' if len(left_out) == 1 else 'them'} (name a model there to make it part of the example)."
        )
