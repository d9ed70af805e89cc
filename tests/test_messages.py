"""Messages and exit codes (issue 26, items 13 and 14): a command-line value that names
nothing is a usage error naming its own option, exit 2, before anything runs; every
`Error:` line names a next step that exists, and the place that is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from funnel.cli import app

from .test_refusals import one_error

# 13. --select and --exclude name a model, folder, path or tag of the project, on every command.

SELECTING = {
    "build": ["build"],
    "test": ["test"],
    "compile": ["compile"],
    "export": ["export", "-f", "csv", "--out", "out"],
    "parity": ["parity"],
}
EXCLUDING = ("build", "test", "compile")  # export and parity take --select only


def _nothing_ran(project: Path, result) -> None:
    assert "Building env" not in result.stderr
    assert not (project / "out").exists()


@pytest.mark.parametrize("command", sorted(SELECTING))
def test_an_unknown_select_is_a_usage_error_on_every_command(built, runner, command):
    result = runner.invoke(app, [*SELECTING[command], "--select", "stg_dels"])
    line = one_error(result, code=2)
    assert "Invalid value for '--select': no model or folder named 'stg_dels'. Did you mean 'stg_deals'?" in line
    _nothing_ran(built, result)


@pytest.mark.parametrize("command", EXCLUDING)
@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("stg_dels", "no model or folder named 'stg_dels'. Did you mean 'stg_deals'?"),
        ("tag:nope", "no model has tag 'nope'"),
        ("path:sql/nope", "no model under path 'sql/nope'"),
    ],
    ids=["name", "tag", "path"],
)
def test_an_unknown_exclude_is_a_usage_error_naming_exclude(built, runner, command, value, words):
    result = runner.invoke(app, [*SELECTING[command], "--select", "staging", "--exclude", value])
    line = one_error(result, code=2)
    assert f"Invalid value for '--exclude': {words}" in line
    assert "--select" not in line
    _nothing_ran(built, result)


def test_the_api_names_exclude_too(project):
    from funnel.errors import ModelError

    from .conftest import compiled

    graph = compiled(project).graph
    with pytest.raises(ModelError, match=r"^--exclude: no model or folder named 'stg_dels'\. Did you mean 'stg_deals'\?"):
        graph.select("staging", exclude="stg_dels")
    with pytest.raises(ModelError, match=r"^--select: no model has tag 'nope'"):
        graph.select("tag:nope")


# 14. Each Error line's next step exists.


def test_clean_during_a_build_names_a_next_step_clean_has(built, runner):
    """It said 'rerun with --wait SECONDS', and clean has no --wait."""
    import os

    from funnel.project.config import load_config
    from funnel.workdir import build_lock

    env = load_config(built).environment("dev")
    with build_lock(env):
        line = one_error(runner.invoke(app, ["clean"]))
        assert f"another build of env 'dev' is running (pid {os.getpid()}); let it finish, or stop it," in line
        assert line.endswith("then run funnel clean again.")
        assert "--wait" not in line
        # a build, which has --wait, still says so
        assert "rerun with --wait SECONDS" in one_error(runner.invoke(app, ["build", "--full-refresh"]))
    assert (built / "target" / "dev.duckdb").exists()
    assert runner.invoke(app, ["clean"]).exit_code == 0  # the step it names works


def test_test_failures_after_clean_says_there_is_no_build(built, runner):
    """clean removes every file funnel keeps beside the database, the failing rows of the
    last failed build among them: test --failures then describes no build that is gone."""
    (built / "sql" / "tests" / "always_fails.sql").write_text("select deal_id from {{ ref('stg_deals') }}")
    assert runner.invoke(app, ["build"]).exit_code == 1
    before = runner.invoke(app, ["test", "--failures"])
    assert "that failed at" in before.stderr  # what clean must not leave behind
    (built / "sql" / "tests" / "always_fails.sql").unlink()
    assert runner.invoke(app, ["docs"]).exit_code == 0
    assert runner.invoke(app, ["clean"]).exit_code == 0
    assert not (built / "target").exists() or list((built / "target").rglob("*")) == []
    result = runner.invoke(app, ["test", "--failures"])
    line = one_error(result)
    assert "no build of env 'dev'" in line and line.endswith("run funnel build --env dev first.")
    assert "failed at" not in result.stderr and "stopped by" not in result.stderr


MACROS = """\
{% macro bad_ref() %}
select *
from {{ ref('stg_dels') }}
{% endmacro %}
{% macro bad_source() %}
select * from {{ source('pipedrive', 'dealz') }}
{% endmacro %}
{% macro bad_var() %}

{{ var('nope') }}
{% endmacro %}
"""


@pytest.mark.parametrize(
    ("model", "line_no", "words"),
    [
        ("{{ bad_ref() }}", 3, "ref('stg_dels') names no model. Did you mean 'stg_deals'?"),
        ("{{ bad_source() }}", 6, "source('pipedrive', 'dealz') is not declared. Did you mean 'pipedrive.deals'?"),
        ("select {{ bad_var() }} as x", 10, "var('nope') is not set"),
    ],
    ids=["ref", "source", "var"],
)
def test_a_ref_error_inside_a_macro_names_the_macro_file_and_line(project, runner, model, line_no, words):
    """It named only the model, which has no ref() of its own to look for."""
    (project / "sql" / "macros" / "checks.sql").write_text(MACROS)
    (project / "sql" / "reporting" / "rep_t.sql").write_text(f"-- a model\n{model}\n")
    for command in (["compile"], ["build"]):
        line = one_error(runner.invoke(app, command))
        assert f"rep_t.sql (in {project / 'sql' / 'macros' / 'checks.sql'} line {line_no}): {words}" in line, command
    assert not (project / "target" / "dev.duckdb").exists()


def test_a_ref_error_in_the_model_itself_names_its_line(project, runner):
    (project / "sql" / "reporting" / "rep_t.sql").write_text("-- a model\n\nselect * from {{ ref('stg_dels') }}\n")
    line = one_error(runner.invoke(app, ["compile"]))
    assert line.endswith("rep_t.sql line 3: ref('stg_dels') names no model. Did you mean 'stg_deals'?")


# An empty path (an unset shell variable: --out "$DIR") is not the current folder.

EMPTY_PATHS = {
    "export": (["export", "-f", "csv", "--out", ""], "--out"),
    "export-parquet": (["export", "-f", "parquet", "--out", ""], "--out"),
    "compile": (["compile", "--out", ""], "--out"),
    "docs": (["docs", "--out", ""], "--out"),
    "report": (["report", "--out", ""], "--out"),
    "generate": (["generate", "--deals", "5", "--out", ""], "--out"),
    "pull": (["pull", "--out", ""], "--out"),
    "build": (["build", "--raw-data", ""], "--raw-data"),
    "init": (["init", ""], "folder"),
}


@pytest.mark.parametrize("case", sorted(EMPTY_PATHS))
def test_an_empty_path_is_a_usage_error_and_writes_nothing(built, runner, monkeypatch, case):
    monkeypatch.setenv("PIPEDRIVE_API_TOKEN", "not-a-token")
    args, option = EMPTY_PATHS[case]
    here = sorted(p.name for p in built.iterdir())
    line = one_error(runner.invoke(app, args), code=2)
    assert f"Invalid value for '{option}': the path is empty; give one ('.' names the current folder)." in line
    assert sorted(p.name for p in built.iterdir()) == here
