"""`funnel init`: a project of the user's own, from the installed package, anywhere."""

from __future__ import annotations

from funnel.cli import app

from .conftest import read_report


def test_init_writes_a_project_that_builds_and_shows(tmp_path, runner, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FUNNEL_PROJECT_DIR", raising=False)
    result = runner.invoke(app, ["init", "shop"])
    assert result.exit_code == 0, result.output
    shop = tmp_path / "shop"
    assert {p.name for p in shop.iterdir()} == {"environments.toml", "sql", "raw_data", ".gitignore"}
    assert (shop / "sql" / "sources.toml").is_file()
    monkeypatch.chdir(shop)
    assert runner.invoke(app, ["build"]).exit_code == 0
    shown = runner.invoke(app, ["show", "--format", "csv"])
    assert shown.exit_code == 0 and shown.stdout.startswith("month,kpi_name,funnel_step,deals_count")
    assert len(read_report(shop / "target" / "dev.duckdb")) == len(shown.stdout.splitlines()) - 1


def test_init_never_writes_into_a_folder_that_has_files(tmp_path, runner, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "shop").mkdir()
    (tmp_path / "shop" / "notes.txt").write_text("mine")
    result = runner.invoke(app, ["init", "shop"])
    assert result.exit_code == 1
    assert "already exists and is not an empty folder" in result.stderr
    assert [p.name for p in (tmp_path / "shop").iterdir()] == ["notes.txt"]


def test_a_model_added_to_an_initialised_project_builds_with_its_test(tmp_path, runner, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert runner.invoke(app, ["init", "shop"]).exit_code == 0
    shop = tmp_path / "shop"
    monkeypatch.chdir(shop)
    (shop / "sql" / "marts").mkdir()
    (shop / "sql" / "marts" / "mart_stage_names.sql").write_text("select stage_id, stage_name from {{ ref('stg_stages') }}")
    (shop / "sql" / "marts" / "tests.toml").write_text(
        '[[test]]\nmodel = "mart_stage_names"\ntype = "unique"\ncolumns = ["stage_id"]\n'
    )
    result = runner.invoke(app, ["build"])
    assert result.exit_code == 0, result.output
    assert "OK    table  mart_stage_names" in result.stderr
    assert runner.invoke(app, ["test", "--select", "mart_stage_names"]).stderr.count("PASS=1 ") == 1
