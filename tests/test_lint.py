"""The code checks README's Development section asks for, run by CI too: ruff's lint and
format, and mypy --strict over funnel/ (pyproject's [tool.mypy]). Run only by the README's
pytest, they drifted: main had 17 mypy errors before anyone noticed.

The versions are pinned in the test extra, so a new release's rules fail a pull request
that changes them, not every CI run after the release."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def run(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env_cache = {"RUFF_CACHE_DIR": str(tmp_path / "ruff"), "MYPY_CACHE_DIR": str(tmp_path / "mypy")}
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, env={**os.environ, **env_cache}
    )


def test_ruff_finds_nothing(tmp_path):
    found = run("ruff", "check", ".", tmp_path=tmp_path)
    assert found.returncode == 0, found.stdout + found.stderr


def test_the_code_is_formatted(tmp_path):
    found = run("ruff", "format", "--check", ".", tmp_path=tmp_path)
    assert found.returncode == 0, found.stdout + found.stderr


def test_mypy_strict_finds_nothing(tmp_path):
    found = run("mypy", tmp_path=tmp_path)
    assert found.returncode == 0, found.stdout + found.stderr
