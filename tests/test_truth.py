"""No wrong number, no hang, no false message: the paths where funnel used to publish a
wrong build with exit 0, wait forever, or print something untrue."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from funnel import workdir
from funnel.cli import app
from funnel.engine import database
from funnel.pipedrive.sample import generate

from .conftest import REPO, read_report


def error_line(result) -> str:
    return result.stderr.strip().splitlines()[-1]


def funnel(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "funnel", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


# Progress output nobody reads must not change what the build does.


@pytest.mark.slow
def test_progress_pipe_closed_build_equals_a_normal_build(project, tmp_path):
    other = tmp_path / "other"
    generate(other, deals=60, seed=9)
    command = f"{sys.executable} -m funnel build --raw-data {other} 2>&1 | head -1; exit ${{PIPESTATUS[0]}}"
    done = subprocess.run(["bash", "-c", command], cwd=project, timeout=120, capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.startswith("Building env dev"), done.stdout
    # It ran to the end and published exactly what a build with a reader publishes.
    piped = read_report(project / "target" / "dev.duckdb")
    shutil.rmtree(project / "target")
    assert funnel("build", "--raw-data", str(other), cwd=project).returncode == 0
    assert piped == read_report(project / "target" / "dev.duckdb")


# prod never reads the bundled sample by default.


def test_the_shipped_prod_environment_names_no_default_export(project, runner):
    shutil.copy(REPO / "environments.toml", project / "environments.toml")
    result = runner.invoke(app, ["build", "--env", "prod"])
    assert result.exit_code == 1
    line = error_line(result)
    assert line.startswith("Error: ") and "[prod] names no export" in line and "--raw-data" in line
    assert not (project / "target" / "prod.duckdb").exists()


def test_prod_builds_from_an_export_it_is_given(project, runner):
    shutil.copy(REPO / "environments.toml", project / "environments.toml")
    result = runner.invoke(app, ["build", "--env", "prod", "--raw-data", str(project / "raw_data")])
    assert result.exit_code == 0, result.output


# Waits end; sources are files; a generate that cannot fit is refused before writing.


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_wait_must_be_finite(project, runner, value):
    result = runner.invoke(app, ["build", "--wait", value])
    assert result.exit_code == 2
    assert "finite" in error_line(result)


def test_generate_refuses_what_does_not_fit_on_the_disk(tmp_path, runner, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["generate", "--deals", "1000000000000", "--out", "huge"])
    assert result.exit_code == 1
    line = error_line(result)
    assert "deals need about" in line and "free" in line
    assert not any((tmp_path / "huge").glob("*.csv"))


def test_generate_never_overwrites_an_export_without_force(tmp_path, runner, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert runner.invoke(app, ["generate", "--deals", "20", "--out", "exp"]).exit_code == 0
    before = (tmp_path / "exp" / "deal_changes.csv").read_bytes()
    result = runner.invoke(app, ["generate", "--deals", "30", "--seed", "5", "--out", "exp"])
    assert result.exit_code == 1
    assert "already holds an export" in error_line(result) and "--force" in error_line(result)
    assert (tmp_path / "exp" / "deal_changes.csv").read_bytes() == before
    assert runner.invoke(app, ["generate", "--deals", "30", "--seed", "5", "--out", "exp", "--force"]).exit_code == 0
    assert (tmp_path / "exp" / "deal_changes.csv").read_bytes() != before


# Every message is true when it is printed.


@pytest.mark.slow
def test_an_interrupt_after_publishing_does_not_claim_the_build_is_unchanged(built, runner, monkeypatch, tmp_path):
    other = tmp_path / "other"
    generate(other, deals=60, seed=9)
    before = read_report(built / "target" / "dev.duckdb")

    def interrupted_cleanup(path: Path) -> None:  # Ctrl-C arrives right after the rename
        raise KeyboardInterrupt

    monkeypatch.setattr(workdir, "remove_temp", interrupted_cleanup)
    result = runner.invoke(app, ["build", "--raw-data", str(other)])
    assert result.exit_code == 130
    after = read_report(built / "target" / "dev.duckdb")
    assert after != before  # the new build is in place ...
    assert "published" in error_line(result) and "unchanged" not in error_line(result)  # ... and it says so


@pytest.mark.slow
def test_an_interrupt_before_publishing_says_the_build_is_unchanged(built, runner, monkeypatch, tmp_path):
    other = tmp_path / "other"
    generate(other, deals=60, seed=9)
    before = read_report(built / "target" / "dev.duckdb")

    def interrupted_commit(temp: Path, target: Path) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(database, "commit", interrupted_commit)
    result = runner.invoke(app, ["build", "--raw-data", str(other)])
    assert result.exit_code == 130
    assert error_line(result) == "Interrupted; the last good build is unchanged"
    assert read_report(built / "target" / "dev.duckdb") == before


@pytest.mark.parametrize("month", ["٢٠٢٤-02", "2024-٠٢", "２０２４-02"], ids=["arabic-year", "arabic-month", "fullwidth"])
def test_months_with_non_ascii_digits_are_usage_errors(built, runner, month):
    result = runner.invoke(app, ["show", "--month", month])
    assert result.exit_code == 2, result.output
    assert "is not a month" in error_line(result)


@pytest.mark.parametrize(
    "args",
    [["show", "--month", "2" * 100_000], ["show", "--format", "x" * 100_000], ["show", "--model", "m" * 100_000]],
    ids=["month", "format", "model"],
)
def test_long_values_are_never_echoed_whole(built, runner, args):
    result = runner.invoke(app, args)
    assert result.exit_code in (1, 2)
    assert len(result.stderr) < 1500, result.stderr[:300]
    assert error_line(result).startswith("Error: ")


def test_an_empty_database_path_is_a_config_error(project, runner):
    (project / "environments.toml").write_text('[dev]\ndatabase = ""\nschema = "s"\nraw_data = "raw_data"\n')
    result = runner.invoke(app, ["build"])
    assert result.exit_code == 1
    assert "database is empty" in error_line(result)
    assert not list(project.glob("*.tmp")) and not (project.parent / "project.lock").exists()


def test_a_database_path_naming_a_folder_is_a_config_error(project, runner):
    (project / "environments.toml").write_text('[dev]\ndatabase = "build/"\nschema = "s"\nraw_data = "raw_data"\n')
    result = runner.invoke(app, ["build"])
    assert result.exit_code == 1
    assert "is a folder" in error_line(result)


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare (util-linux) to mount a tiny private tmpfs")
@pytest.mark.slow
def test_a_full_disk_is_not_blamed_on_a_model(project):
    (project / "target").mkdir()
    command = f"mount -t tmpfs -o size=1m tmpfs {project / 'target'} && exec {sys.executable} -m funnel build"  # private mount
    done = subprocess.run(
        ["unshare", "--mount", "--map-root-user", "sh", "-c", command], cwd=project, capture_output=True, text=True, timeout=120
    )
    if "mount" in done.stderr and "Operation not permitted" in done.stderr:
        pytest.skip("this machine allows no private mounts")
    assert done.returncode == 1, done.stderr
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith("Error: ") and "No space left on device" in line, line
    assert ".sql" not in line
    assert "Check free disk space" in line


def test_generate_writes_to_a_folder_with_a_quote_in_its_name(tmp_path, runner, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["generate", "--deals", "20", "--out", "it's here"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "it's here" / "deal_changes.csv").stat().st_size > 0
