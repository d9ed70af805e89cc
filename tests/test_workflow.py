"""dbt's habits: selectors with dbt's grammar, var(), compile with error lines, test
selection and the rows that fail a test."""

from __future__ import annotations

import duckdb
import pytest

from funnel.cli import app
from funnel.errors import ConfigError
from funnel.project.selectors import parse

from .conftest import compiled


def error_line(result) -> str:
    return result.stderr.strip().splitlines()[-1]


def add_model(project, folder: str, name: str, sql: str) -> None:
    path = project / "sql" / folder / f"{name}.sql"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(sql)


# Selectors


def test_selector_grammar_union_intersection_and_graph_operators(project):
    add_model(
        project, "reporting", "rep_daily", "{{ config(tags=['daily']) }}\nselect * from {{ ref('rep_sales_funnel_monthly') }}"
    )
    add_model(project, "marts/sales", "mart_daily", "{{ config(tags=['daily']) }}\nselect * from {{ ref('stg_stages') }}")
    graph = compiled(project).graph
    up = graph.upstream("rep_sales_funnel_monthly")
    assert set(graph.select("tag:daily")) == {"rep_daily", "mart_daily"}
    assert graph.select("tag:daily,reporting") == ["rep_daily"]  # comma: both must hold
    assert set(graph.select("tag:daily stg_users")) == {"rep_daily", "mart_daily", "stg_users"}  # space: either
    assert set(graph.select("+rep_sales_funnel_monthly")) == up | {"rep_sales_funnel_monthly"}
    assert set(graph.select("int_deal_stage_history+")) == {"int_deal_stage_history"} | graph.downstream("int_deal_stage_history")
    down = {"int_deal_stage_history"} | graph.downstream("int_deal_stage_history")
    expected = down.union(*(graph.upstream(n) for n in down))  # downstream, and everything those need
    assert set(graph.select("@int_deal_stage_history")) == expected
    assert "rep_daily" in expected and "stg_activity" in expected  # rep_sales_funnel_monthly needs activities too
    assert graph.select("path:sql/marts") == ["mart_daily"]
    assert set(graph.select("staging")) == {n for n, m in graph.models.items() if m.layer == "staging"}
    assert graph.select("staging", exclude="stg_users") == [n for n in graph.select("staging") if n != "stg_users"]
    assert graph.select("marts") == ["mart_daily"]  # any top folder is a layer


@pytest.mark.parametrize("text", ["stg users;", "+@x", "@x+", "path:", "", "a,,b"])
def test_malformed_selectors_are_refused(text):
    with pytest.raises(ConfigError):
        parse(text)


def test_a_selector_is_parsed_once_into_a_value():
    selector = parse("tag:daily,reporting stg_users+")
    assert [[(c.method, c.value, c.downstream) for c in group] for group in selector.alternatives] == [
        [("tag", "daily", False), ("name", "reporting", False)],
        [("name", "stg_users", True)],
    ]


def test_exclude_on_the_command_line(built, runner):
    for name in ("stg_users", "stg_stages"):
        path = built / "sql" / "staging" / f"{name}.sql"
        path.write_text(path.read_text() + "\n-- edited\n")
    result = runner.invoke(app, ["build", "--select", "staging", "--exclude", "stg_users", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "run   model  stg_stages" in result.stderr and "stg_users" not in result.stderr


# var()


def test_var_from_the_file_the_environment_and_the_command_line(project, runner):
    add_model(project, "reporting", "rep_var", "select '{{ var(\"greeting\") }}' as greeting, {{ var('n', 7) }} as n")
    config = project / "environments.toml"
    config.write_text(config.read_text() + '\n[vars]\ngreeting = "hello"\n\n[dev.vars]\nn = 3\n')

    def built_values(*extra: str) -> tuple:
        result = runner.invoke(app, ["build", *extra])
        assert result.exit_code == 0, result.output
        with duckdb.connect(str(project / "target" / "dev.duckdb"), read_only=True) as con:
            return con.execute("select greeting, n from public_pipedrive_analytics.rep_var").fetchone()

    assert built_values() == ("hello", 3)  # [dev.vars] wins over the default
    assert built_values("--var", "greeting=hi", "--var", "n=5") == ("hi", 5)
    result = runner.invoke(app, ["build", "--var", "greeting=hi", "--var", "n=5"])
    assert "up to date" in result.stderr  # same vars, same SQL
    changed = runner.invoke(app, ["build", "--var", "greeting=hey", "--var", "n=5", "--dry-run"])
    assert "run   model  rep_var                                  SQL changed" in changed.stderr  # a var is SQL
    with duckdb.connect(str(project / "target" / "dev.duckdb"), read_only=True) as con:
        import json

        info = json.loads(con.execute("select info from _funnel.build_info").fetchone()[0])
    assert info["vars"] == {"greeting": "hi", "n": 5}


def test_an_unset_var_names_the_model_and_where_to_set_it(project, runner):
    add_model(project, "reporting", "rep_var", "select {{ var('stage_entri') }} as x")
    config = project / "environments.toml"
    config.write_text(config.read_text() + '\n[vars]\nstage_entry = "first"\n')
    result = runner.invoke(app, ["build"])
    assert result.exit_code == 1
    line = error_line(result)
    assert "rep_var.sql line 1: var('stage_entri') is not set" in line and "Did you mean 'stage_entry'?" in line


@pytest.mark.parametrize("given", ["novalue", "=x", "a b=1"])
def test_a_malformed_var_option_is_an_error(project, runner, given):
    result = runner.invoke(app, ["build", "--var", given])
    assert result.exit_code in (1, 2)
    assert "KEY=VALUE" in error_line(result)


# compile


def test_compile_prints_the_rendered_sql_of_the_selection(project, runner):
    result = runner.invoke(app, ["compile", "--select", "stg_stages"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("-- stg_stages: view from ")
    assert '"pipedrive"."stages"' in result.stdout and "{{" not in result.stdout


def test_a_syntax_error_names_the_file_and_line_at_compile_and_at_build(project, runner):
    path = project / "sql" / "reporting" / "rep_pipeline_funnel_monthly.sql"
    lines = path.read_text().splitlines()
    where = next(i for i, line in enumerate(lines, start=1) if "group by all" in line)
    lines[where - 1] = lines[where - 1].replace("group by all", "grop by all")
    path.write_text("{{ config(materialized='table') }}\n" + "\n".join(lines[:-0] or lines) + "\n")
    where += 1  # the config line above
    result = runner.invoke(app, ["compile", "--select", "rep_pipeline_funnel_monthly"])
    assert result.exit_code == 1
    assert f"rep_pipeline_funnel_monthly.sql line {where}: syntax error at or near" in result.stderr
    assert "'grop by all'" in result.stderr
    build = runner.invoke(app, ["build"])
    assert build.exit_code == 1
    assert f"rep_pipeline_funnel_monthly.sql line {where}: Parser Error" in error_line(build)


def test_a_binder_error_names_the_line_with_the_unknown_column(project, runner):
    add_model(project, "reporting", "rep_bad", "select\n    1 as a,\n    no_such_column as b\nfrom {{ ref('stg_stages') }}\n")
    result = runner.invoke(app, ["build"])
    assert result.exit_code == 1
    assert "rep_bad.sql line 3: Binder Error" in error_line(result)


# test --select, --failures


def test_test_select_runs_only_the_tests_on_those_models(built, runner):
    manifest = compiled(built)
    on_stages = [t for t in manifest.tests if "stg_stages" in t.depends_on]
    result = runner.invoke(app, ["test", "--select", "stg_stages"])
    assert result.exit_code == 0, result.output
    assert f"PASS={len(on_stages)} WARN=0 ERROR=0" in result.stderr


def test_failing_rows_of_a_failed_build_are_kept_and_the_build_untouched(built, runner):
    database = built / "target" / "dev.duckdb"
    before = database.read_bytes()
    (built / "sql" / "tests" / "no_stage_nine.sql").write_text(
        "select stage_id, stage_name from {{ ref('stg_stages') }} where stage_id = 9"
    )
    result = runner.invoke(app, ["build"])
    assert result.exit_code == 1
    assert "no_stage_nine: 1 row, the first 1:" in result.stderr  # the build's own message shows them
    assert "9 | Renewal/Expansion" in result.stderr
    assert database.read_bytes() == before
    shown = runner.invoke(app, ["test", "--failures"])
    assert "that failed at" in shown.stderr and "9 | Renewal/Expansion" in shown.stderr
    assert shown.exit_code == 1  # the test fails on the last good build too


def test_test_failures_shows_warn_rows_of_the_last_build(built, runner):
    result = runner.invoke(app, ["test", "--failures", "--limit", "2"])
    assert result.exit_code == 0
    assert "On the last good build of env dev:" in result.stderr
    assert "activities_with_unknown_deal:" in result.stderr and "the first 2:" in result.stderr
