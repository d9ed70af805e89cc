"""The package as a user gets it: built into an sdist and a wheel without warnings, the wheel
installed by its name into a fresh virtual environment outside the repository, and the four
commands of a first day run there (pip may use its cache and the package index; nothing else
is fetched). The release workflow runs this test before it publishes."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from funnel import DISTRIBUTION, __version__

from .conftest import REPO

pytestmark = pytest.mark.slow


def run(args: list[str | Path], cwd: Path, env: dict[str, str], timeout: int = 900) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{args} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result


def clean_env() -> dict[str, str]:
    """This process's environment without what would point a new install at the repository."""
    drop = ("FUNNEL_", "PYTHONPATH", "VIRTUAL_ENV", "PYTHONDONTWRITEBYTECODE")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


def test_wheel_installs_by_name_in_a_fresh_venv_and_runs_init_build_show_report(tmp_path: Path) -> None:
    env = clean_env()
    dist = tmp_path / "dist"
    built = run([sys.executable, "-m", "build", "--outdir", dist, REPO], tmp_path, env)
    log = built.stdout + built.stderr
    warnings = [line for line in log.splitlines() if "warning" in line.lower() and "Location 'file:" not in line]
    assert warnings == [], "\n".join(warnings)  # e.g. "Package 'funnel.example' is absent ... would be ignored"
    wheel = dist / f"{DISTRIBUTION.replace('-', '_')}-{__version__}-py3-none-any.whl"
    assert (dist / f"{DISTRIBUTION.replace('-', '_')}-{__version__}.tar.gz").is_file() and wheel.is_file()
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    # funnel init's example project is in the wheel (the links under funnel/example resolved)
    assert "funnel/example/environments.toml" in names and "funnel/example/raw_data/deal_changes.csv" in names
    assert any(n.startswith("funnel/example/sql/reporting/") for n in names)

    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", venv], tmp_path, env)
    pip = venv / "bin" / "pip"
    run([pip, "install", "-q", f"{DISTRIBUTION} @ {wheel.as_uri()}"], tmp_path, env)
    funnel = venv / "bin" / "funnel"
    home = tmp_path / "elsewhere"  # outside the repository: nothing of it is on the path
    home.mkdir()
    assert run([funnel, "--version"], home, env).stdout == f"{DISTRIBUTION} {__version__}\n"
    where = run([venv / "bin" / "python", "-c", "import funnel; print(funnel.__file__)"], home, env).stdout
    assert Path(where.strip()).is_relative_to(venv), where  # the installed copy, not the checkout

    run([funnel, "init", "demo"], home, env)
    project = home / "demo"
    assert not (project / "sql").is_symlink()  # a copy the user owns, not a link into site-packages
    built_log = run([funnel, "build"], project, env).stderr
    assert "tests PASS=" in built_log and "ERROR=0" in built_log
    shown = run([funnel, "show", "--month", "2024-02", "-f", "csv"], project, env).stdout
    assert shown.splitlines()[0] == "month,kpi_name,funnel_step,deals_count"
    assert "2024-02-01,Step 1: Lead Generation,1.0,237" in shown.splitlines()  # the bundled sample's figure (README)
    run([funnel, "report", "--out", "r.html"], project, env)
    page = (project / "r.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") or page.lower().startswith("<!doctype html>")
    assert "plotly" in page.lower() and len(page) > 1_000_000  # the charts, plotly.js embedded
