from pathlib import Path

import pytest

from funnel.errors import ConfigError, ModelError
from funnel.project.models import load

REPO_SQL = Path(__file__).resolve().parent.parent / "sql"
ORIGINAL_MODELS = {
    "stg_activity",
    "stg_activity_types",
    "stg_deal_changes",
    "stg_stages",
    "stg_users",
    "int_completed_activities",
    "int_deal_stage_history",
    "rep_sales_funnel_monthly",
}


@pytest.fixture
def dag():
    return load(REPO_SQL, "public_pipedrive_analytics")


def test_the_original_eight_models_with_their_layer_defaults(dag):
    assert ORIGINAL_MODELS <= set(dag.models)
    for name in ORIGINAL_MODELS:
        model = dag.models[name]
        assert model.materialized == ("view" if model.layer == "staging" else "table")
    assert dag.models["rep_sales_funnel_monthly"].layer == "reporting"


def test_run_order_respects_refs_and_is_deterministic(dag):
    position = {name: i for i, name in enumerate(dag.order)}
    for model in dag.models.values():
        for parent in model.refs:
            assert position[parent] < position[model.name], (parent, model.name)
    assert dag.order == load(REPO_SQL, "public_pipedrive_analytics").order
    # Ties break by layer, then name.
    assert list(dag.order[:8]) == [
        "funnel_steps",
        "stg_activity",
        "stg_activity_types",
        "stg_deal_changes",
        "stg_deals",
        "stg_fields",
        "stg_stages",
        "stg_users",
    ]


def test_refs_render_to_the_environment_schema(dag):
    prod = load(REPO_SQL, "prod_pipedrive_analytics")
    assert '"public_pipedrive_analytics"."int_deal_stage_history"' in dag.models["rep_pipeline_funnel_monthly"].sql
    assert '"prod_pipedrive_analytics"."int_deal_stage_history"' in prod.models["rep_pipeline_funnel_monthly"].sql
    assert '"pipedrive"."deal_changes"' in dag.models["stg_deal_changes"].sql
    # Through the macros step_entries and step_calls; the one-pipeline report reads the every-pipeline one.
    pipeline_refs = ("funnel_steps", "int_deal_stage_history", "int_completed_activities")
    assert dag.models["rep_pipeline_funnel_monthly"].refs == pipeline_refs
    assert dag.models["rep_sales_funnel_monthly"].refs == ("rep_pipeline_funnel_monthly",)


# A project of its own, so that a model added to the shipped example changes nothing here:
#   stg_stages -> int_history -> rep_cohorts, rep_funnel;  stg_users -> rep_funnel, rep_owners
SELECT_PROJECT = {
    "staging/stg_stages.sql": "select 1 as stage_id",
    "staging/stg_users.sql": "select 1 as user_id",
    "intermediate/int_history.sql": "select * from {{ ref('stg_stages') }}",
    "reporting/rep_funnel.sql": "select * from {{ ref('int_history') }} cross join {{ ref('stg_users') }}",
    "reporting/rep_owners.sql": "select * from {{ ref('stg_users') }}",
    "reporting/rep_cohorts.sql": "select * from {{ ref('int_history') }}",
}


@pytest.fixture
def small_dag(tmp_path):
    for name, text in SELECT_PROJECT.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return load(tmp_path, "s")


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("stg_stages", {"stg_stages"}),
        ("stg_stages+", {"stg_stages", "int_history", "rep_funnel", "rep_cohorts"}),
        ("+int_history", {"stg_stages", "int_history"}),
        ("+rep_funnel", {"stg_stages", "stg_users", "int_history", "rep_funnel"}),
        ("intermediate", {"int_history"}),
        ("stg_users rep_funnel", {"stg_users", "rep_funnel"}),
        ("stg_users reporting", {"stg_users", "rep_funnel", "rep_owners", "rep_cohorts"}),
        ("stg_users stg_stages", {"stg_stages", "stg_users"}),  # a space: either
        ("stg_users,stg_stages", set()),  # a comma: both, as in dbt
        ("staging,stg_users+", {"stg_users"}),
        ("stg_users+,int_history+", {"rep_funnel"}),
    ],
)
def test_select(small_dag, selector, expected):
    chosen = small_dag.select(selector)
    assert set(chosen) == expected
    assert chosen == [n for n in small_dag.order if n in expected]  # in run order


def test_select_all_by_default(dag):
    assert dag.select(None) == list(dag.order)


def test_select_unknown_name_suggests(dag):
    with pytest.raises(ModelError, match="no model or folder named 'stg_stage'. Did you mean 'stg_stages'"):
        dag.select("stg_stage")


@pytest.mark.parametrize("selector", ["a;b", "++x", "x'--", "@x+", "   "])
def test_select_malformed_is_a_usage_error(dag, selector):
    with pytest.raises(ConfigError):
        dag.select(selector)


MONTH = "{% macro month(ts) %}date_trunc('month', {{ ts }}){% endmacro %}"


def make_sql(tmp_path: Path, files: dict[str, str]) -> Path:
    sql = tmp_path / "sql"
    for relative, text in files.items():
        path = sql / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return sql


def test_unknown_ref_names_the_file_and_suggests(tmp_path):
    sql = make_sql(
        tmp_path,
        {
            "staging/stg_a.sql": "select 1 as x",
            "intermediate/int_b.sql": "select * from {{ ref('stg_aa') }}",
        },
    )
    with pytest.raises(ModelError, match=r"int_b.sql line 1: ref\('stg_aa'\) names no model. Did you mean 'stg_a'"):
        load(sql, "s")


def test_cycle_is_an_error_naming_the_loop(tmp_path):
    sql = make_sql(
        tmp_path,
        {
            "intermediate/int_a.sql": "select * from {{ ref('int_b') }}",
            "intermediate/int_b.sql": "select * from {{ ref('int_a') }}",
        },
    )
    with pytest.raises(ModelError, match=r"dependency cycle int_\w -> int_\w -> int_\w"):
        load(sql, "s")


def test_config_materialized_overrides_the_layer_default(tmp_path):
    sql = make_sql(
        tmp_path,
        {
            "staging/stg_a.sql": "{{ config(materialized='table') }}\nselect 1 as x",
            "reporting/rep_b.sql": "{{ config(materialized='view') }}\nselect * from {{ ref('stg_a') }}",
        },
    )
    dag = load(sql, "s")
    assert dag.models["stg_a"].materialized == "table"
    assert dag.models["rep_b"].materialized == "view"


@pytest.mark.parametrize(
    ("files", "words"),
    [
        ({"staging/stg_a.sql": "{{ config(materialized='incremental') }} select 1"}, "materialized='incremental' is not one of"),
        ({"staging/stg_a.sql": "{{ config(schedule='daily') }} select 1"}, "unknown config key(s) schedule"),
        ({"staging/stg_a.sql": "{{ config(tags=['a b']) }} select 1"}, "tags must be a list of plain names"),
        ({"stg_a.sql": "select 1"}, "a model lives in a folder under sql/"),
        ({"seeds/stg_a.sql": "select 1"}, "sql/seeds/ holds CSV seeds"),
        ({"staging/stg_a.sql": "select {{ nope }}"}, "'nope' is undefined"),
        ({"staging/stg_a.sql": "select {{ 1 + }}"}, "stg_a.sql line 1:"),
        ({"staging/stg_a.sql": "   "}, "the file is empty"),
        (
            {"staging/stg_a.sql": "select * from {{ source('pipedrive', 'persons') }}"},
            "source('pipedrive', 'persons') is not declared",
        ),
        ({"intermediate/int_a.sql": "select * from {{ source('pipedrive', 'stages') }}"}, "only staging models read sources"),
        ({"staging/x.sql": "select 1", "reporting/x.sql": "select 2"}, "model name 'x' is also used by"),
        ({"staging/bad-name.sql": "select 1"}, "model file names must be plain identifiers"),
        ({"staging/stg_a.sql": "select {{ cents('x') }}"}, "'cents' is undefined"),
        (
            {"macros/m.sql": "{% macro cents(x) %}{{ x }} * 100{% endmacro %}\nselect 1", "staging/stg_a.sql": "select 1"},
            "m.sql line 2: a macros file holds only {% macro %} definitions",
        ),
        (
            {
                "macros/a.sql": "{% macro cents(x) %}{{ x }} * 100{% endmacro %}",
                "macros/b.sql": "{% macro cents(x) %}{{ x }}{% endmacro %}",
                "staging/stg_a.sql": "select 1",
            },
            "b.sql: macro 'cents' is also defined in",
        ),
        ({"macros/m.sql": "{% macro ref(x) %}{% endmacro %}", "staging/stg_a.sql": "select 1"}, "would hide ref()"),
        ({"macros/m.sql": "{% macro cents(x) %}{{ x }", "staging/stg_a.sql": "select 1"}, "m.sql line 1:"),
        (
            {
                "macros/m.sql": "{% macro a() %}1{% endmacro %}\n{{ config(materialized='view') }}",
                "staging/stg_a.sql": "select 1",
            },
            "m.sql line 2: a macros file holds only {% macro %} definitions and comments",
        ),
        (
            {"macros/m.sql": "{% set x = ref('stg_a') %}{% macro a() %}1{% endmacro %}", "staging/stg_a.sql": "select 1"},
            "m.sql line 1: a macros file holds only",
        ),
        (
            {"macros/m.sql": "{% if true %}{% macro a() %}1{% endmacro %}{% endif %}", "staging/stg_a.sql": "select 1"},
            "m.sql line 1: a macros file holds only",
        ),
        ({"macros/m.sql": "{% macro range(n) %}{% endmacro %}", "staging/stg_a.sql": "select 1"}, "would hide range()"),
        ({"staging/stg_a.sql": "select {{ month('a', 'b') }}", "macros/m.sql": MONTH}, "macro 'month' takes not more than 1"),
        ({"staging/stg_a.sql": "select {{ 1 + 'x' }}"}, "stg_a.sql line 1: unsupported operand"),
        (
            {
                "staging/stg_a.sql": "select\n{{ cents(1) }}",
                "macros/m.sql": "{% macro cents(x) %}\n{{ x * nope }}\n{% endmacro %}",
            },
            "m.sql line 2): 'nope' is undefined",
        ),
        ({"staging/stg_a.sql": "select {{ cycler() }}"}, "stg_a.sql line 1: at least one item has to be provided"),
        (
            {
                "macros/m.sql": "{% macro deep() %}{{ " + "(" * 300 + "1" + ")" * 300 + " }}{% endmacro %}",
                "staging/stg_a.sql": "select 1",
            },
            "m.sql: the Jinja nests too deeply to compile",
        ),
        ({"macros/m.sql": "{% macro self() %}{% endmacro %}", "staging/stg_a.sql": "select 1"}, "would hide self()"),
        (
            {"macros/m.sql": "{% macro a() %}{% endmacro %}{% macro a() %}{% endmacro %}", "staging/stg_a.sql": "select 1"},
            "macro 'a' is also defined earlier in this file",
        ),
        (
            {"staging/stg_a.sql": "select {{ forever() }}", "macros/m.sql": "{% macro forever() %}{{ forever() }}{% endmacro %}"},
            "stg_a.sql: the Jinja nests too deeply, or a macro calls itself without end",
        ),
    ],
    ids=[
        "materialization",
        "config-key",
        "tags",
        "model-outside-a-folder",
        "sql-in-seeds",
        "undefined",
        "syntax",
        "empty",
        "source",
        "source-outside-staging",
        "duplicate-name",
        "file-name",
        "unknown-macro",
        "macro-file-with-sql",
        "macro-defined-twice",
        "macro-hides-ref",
        "macro-syntax",
        "macros-file-with-config",
        "macros-file-with-set",
        "macro-inside-if",
        "macro-hides-jinja-global",
        "macro-arguments",
        "jinja-type-error",
        "error-inside-a-macro",
        "jinja-runtime-error",
        "macro-nests-too-deeply",
        "macro-hides-self",
        "macro-twice-in-a-file",
        "macro-recursion",
    ],
)
def test_model_errors_name_the_file(tmp_path, files, words):
    sql = make_sql(tmp_path, files)
    with pytest.raises(ModelError) as info:
        load(sql, "s")
    assert words in str(info.value)
    assert str(sql) in str(info.value)


def test_macros_are_callable_from_every_model_and_may_call_each_other_and_ref(tmp_path):
    """As in dbt: a macro in sql/macros/ is called by name; what it ref()s is a dependency of
    the model that calls it; macros of other files are in reach, whatever the file order."""
    sql = make_sql(
        tmp_path,
        {
            "macros/a_money.sql": "{% macro euros(x) %}round({{ cents(x) }} / 100, 2){% endmacro %}",
            "macros/b_cents.sql": "{#- cents -#}\n{% macro cents(x) %}{{ x }} * {{ var('scale', 1) }}{% endmacro %}\n",
            "macros/lookup.sql": "{% macro rates() %}{{ ref('stg_rates') }}{% endmacro %}",
            "staging/stg_rates.sql": "select 2 as rate",
            "reporting/rep_a.sql": "select {{ euros('rate') }} as eur from {{ rates() }}",
            "reporting/rep_b.sql": "{% macro euros(x) %}{{ x }}{% endmacro %}select {{ euros('1') }} as own",
        },
    )
    dag = load(sql, "s", variables={"scale": 100})
    assert dag.models["rep_a"].sql == 'select round(rate * 100 / 100, 2) as eur from "s"."stg_rates"'
    assert dag.models["rep_a"].refs == ("stg_rates",)
    assert dag.order.index("stg_rates") < dag.order.index("rep_a")
    assert dag.models["rep_b"].sql == "select 1 as own"  # a file's own macro wins over the project's
    assert set(dag.models) == {"stg_rates", "rep_a", "rep_b"}  # macro files are not models


def test_private_macros_and_a_byte_order_mark(tmp_path):
    sql = make_sql(
        tmp_path,
        {"staging/stg_a.sql": "select {{ plus_one(1) }} as x"},
    )
    (sql / "macros").mkdir()
    (sql / "macros" / "m.sql").write_bytes(
        b"\xef\xbb\xbf{% macro _inner(x) %}({{ x }} + 1){% endmacro %}\r\n"
        b"{% macro plus_one(x) %}{{ _inner(x) }}{% endmacro %}\r\n"
    )
    assert load(sql, "s").models["stg_a"].sql == "select (1 + 1) as x"


@pytest.mark.parametrize("description", ["5", "['a']"])
def test_a_sql_test_description_must_be_text(tmp_path, description):
    from funnel.project.checks import collect

    sql = make_sql(
        tmp_path,
        {"staging/stg_a.sql": "select 1 as x", "tests/t.sql": f"{{{{ config(description={description}) }}}}select 1"},
    )
    with pytest.raises(ModelError, match=r"t.sql: config\(\) takes severity='error'\|'warn' and description='text' only"):
        collect(sql, load(sql, "s"))
