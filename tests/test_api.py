"""The Python API (`from funnel import Project`), used the way a notebook would."""

from __future__ import annotations

import re

import duckdb
import pytest

from funnel.errors import ConfigError

from .test_spark import SPARK_ENV, needs_spark

SCHEMA = "public_pipedrive_analytics"


def test_a_notebook_builds_reads_a_model_and_one_month(project):
    from funnel import Project

    notebook = Project(project, env="dev")
    assert not notebook.plan().up_to_date
    result = notebook.build(vars={"stage_entry": "every"})
    assert result.count("ERROR") == 0 and notebook.plan(vars={"stage_entry": "every"}).up_to_date
    with duckdb.connect(str(project / "target" / "dev.duckdb"), read_only=True) as con:
        expected = con.execute(
            f"select strftime(month, '%Y-%m'), kpi_name, funnel_step, deals_count from {SCHEMA}.rep_sales_funnel_monthly"
        ).fetchall()
    rows = notebook.df("rep_sales_funnel_monthly")  # pandas is not a dependency: a list of dicts without it
    got = rows.to_dict("records") if hasattr(rows, "to_dict") else rows
    assert sorted((r["month"].strftime("%Y-%m"), r["kpi_name"], r["funnel_step"], r["deals_count"]) for r in got) == sorted(
        expected
    )
    month = expected[0][0]
    one = notebook.df("rep_sales_funnel_monthly", month=month)
    one = one.to_dict("records") if hasattr(one, "to_dict") else one
    assert len(one) == sum(1 for r in expected if r[0] == month) and {r["month"].strftime("%Y-%m") for r in one} == {month}
    assert [t.status for t in notebook.test()].count("ERROR") == 0
    with pytest.raises(ConfigError, match="is not a month"):
        notebook.df(month="2024-13")


@pytest.mark.slow
@needs_spark
@pytest.mark.xdist_group("spark")
def test_the_api_builds_a_spark_env_with_spark(project):
    # funnel.build's build() on an engine = "spark" env quietly built with DuckDB.
    from funnel import Project
    from funnel.build import record

    with (project / "environments.toml").open("a") as f:
        f.write(SPARK_ENV)
    from funnel.engine.spark import engine as spark

    try:
        Project(project, env="spark").build(vars={"stage_entry": "every"})
    finally:
        spark.stop()
    with duckdb.connect(str(project / "target" / "spark.duckdb"), read_only=True) as con:
        found = record.read(con)
    assert found is not None and found.engine == "spark" and found.vars["stage_entry"] == "every"
    assert (project / "target" / "warehouse").is_dir()


def test_the_api_prints_nothing_even_where_duckdb_would_draw_its_progress_bar(project, monkeypatch, capfd):
    # DuckDB draws a progress bar on stdout for any query over 2 s (a big export's models,
    # a df() or test() on its build): in a notebook, and in `funnel show -f csv > file`.
    # Here every query over 1 ms counts as slow; funnel's connections turn the bar off.
    real = duckdb.connect

    def impatient(*args, **kwargs):
        con = real(*args, **kwargs)
        con.execute("set progress_bar_time = 1")  # ms
        return con

    monkeypatch.setattr(duckdb, "connect", impatient)
    from funnel import Project

    notebook = Project(project, env="dev")
    notebook.build()
    notebook.df()
    notebook.test()
    notebook.report(project / "report.html")
    assert capfd.readouterr() == ("", "")


def test_a_path_the_system_refuses_is_a_funnel_error_naming_it(project):
    # Both were a raw NotADirectoryError; the CLI says the second as an Error: line.
    from funnel import Project
    from funnel.errors import FunnelError

    with pytest.raises(ConfigError, match=r"environments.toml: not a folder; name the folder that holds environments.toml"):
        Project(project / "environments.toml")
    with pytest.raises(FunnelError, match=r"environments.toml/deal_changes.csv: Not a directory; check the path"):
        Project(project, raw_data=project / "environments.toml").build()


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"stage_entrys": "every"}, "'stage_entrys' is not a funnel definition. Did you mean 'stage_entry'?"),
        ({"stage_entry": "bogus"}, 'stage_entry = "bogus" is not allowed; use "first" or "every"'),
        ({"my var": 1}, "'my var' is not a plain name"),
        ({1: 2}, "'1' is not a plain name"),
        ({"owner": None}, "owner must be a string, number or true/false, not NoneType"),
        ({"owners": ["a", "b"]}, "owners must be a string, number or true/false, not list"),
        ({"owner": object()}, "owner must be a string, number or true/false, not object"),
        ("stage_entry=every", "must be a table of name = value"),
    ],
)
def test_build_vars_take_what_environments_toml_vars_take(project, given, message):
    # A name or value [vars] and --var refuse went through build(vars=): a None or a list
    # on into the models, a key 1 or an object() out as a raw TypeError.
    from funnel import Project

    with pytest.raises(ConfigError, match=re.escape(message)):
        Project(project).build(vars=given)
    assert not (project / "target" / "dev.duckdb").exists()
