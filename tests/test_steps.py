"""The funnel's steps come from the account (issue 21): stages.csv may carry each stage's
pipeline, and a seed written for another account's stages stops the build."""

from __future__ import annotations

import duckdb
import pytest

from funnel.cli import app
from funnel.errors import SourceError
from funnel.project.sources import declared

SCHEMA = "public_pipedrive_analytics"
PIPELINE_HEADER = "stage_id,stage_name,pipeline_id,pipeline_name,order_nr,deal_probability\n"


def error_line(result) -> str:
    return result.stderr.strip().splitlines()[-1]


def query(root, sql: str) -> list[tuple]:
    with duckdb.connect(str(root / "target" / "dev.duckdb"), read_only=True) as con:
        return con.execute(sql).fetchall()


def stages_of_the_original_names(rows: list[str]) -> str:
    """stages.csv with the pipeline columns, its stages named as the shipped seed's steps."""
    return PIPELINE_HEADER + "".join(f"{row}\n" for row in rows)


ORIGINAL_NAMES_IN_TWO_PIPELINES = [
    "1,Lead Generation,1,Sales,1,10",
    "2,Qualified Lead,1,Sales,2,20",
    "3,Needs Assessment,1,Sales,3,",
    "4,Proposal/Quote Preparation,1,Sales,4,50",
    "5,Negotiation,1,Sales,5,80",
    "6,Closing,1,Sales,6,90",
    '7,Implementation/Onboarding,2,"Customer Success, Renewals",1,',
    '8,Follow-up/Customer Success,2,"Customer Success, Renewals",2,',
    '9,Renewal/Expansion,2,"Customer Success, Renewals",3,100',
]


def test_stages_with_their_pipelines_reach_stg_stages(project, runner):
    (project / "raw_data" / "stages.csv").write_text(stages_of_the_original_names(ORIGINAL_NAMES_IN_TWO_PIPELINES))
    result = runner.invoke(app, ["build"])
    assert result.exit_code == 0, result.output
    rows = query(project, f"select * from {SCHEMA}.stg_stages order by stage_id")
    assert rows[1] == (2, "Qualified Lead", 1, "Sales", 2, 20)
    assert rows[8] == (9, "Renewal/Expansion", 2, "Customer Success, Renewals", 3, 100)
    assert rows[2][5] is None  # no probability: NULL, as the API's null


def test_the_original_two_columns_read_as_one_pipeline_in_stage_id_order(built):
    assert (built / "raw_data" / "stages.csv").read_text().splitlines()[0] == "stage_id,stage_name"
    rows = query(built, f"select stage_id, pipeline_id, pipeline_name, order_nr, deal_probability from {SCHEMA}.stg_stages")
    assert rows and all(row == (row[0], None, None, row[0], None) for row in rows)


def test_stages_may_leave_out_only_the_last_optional_columns(project, runner):
    stages = project / "raw_data" / "stages.csv"
    header, *rows = stages.read_text().splitlines()
    stages.write_text(f"{header},pipeline_id\n" + "".join(f"{row},7\n" for row in rows))
    assert runner.invoke(app, ["build"]).exit_code == 0
    assert query(project, f"select distinct pipeline_id, pipeline_name from {SCHEMA}.stg_stages") == [(7, None)]
    stages.write_text("stage_id,stage_name,order_nr\n1,Lead Generation,1\n")
    result = runner.invoke(app, ["build"])
    assert result.exit_code == 1
    assert error_line(result) == (
        f"Error: {stages} line 1: column 'pipeline_id' is named 'order_nr'; the header must be exactly "
        "stage_id,stage_name or stage_id,stage_name,pipeline_id,pipeline_name,order_nr,deal_probability "
        "(or leave out only the last ones)."
    )


def test_a_bad_value_in_an_optional_column_names_its_line(project, runner):
    stages = project / "raw_data" / "stages.csv"
    stages.write_text(stages_of_the_original_names(["1,Lead Generation,1,Sales,first,10"]))
    result = runner.invoke(app, ["build"])
    assert result.exit_code == 1
    assert error_line(result).startswith(f"Error: {stages} line 2, column order_nr: 'first' is not a whole number")


@pytest.mark.parametrize(
    ("declaration", "words"),
    [
        ('optional_columns = ["a"]', "optional_columns must be the last columns"),
        ('optional_columns = ["b", "c"]', "optional_columns must be the last columns"),
        ('optional_columns = "c"', "optional_columns must be a list of the last column names"),
    ],
    ids=["not-last", "all-columns-optional", "not-a-list"],
)
def test_optional_columns_are_the_last_ones(tmp_path, declaration, words):
    (tmp_path / "sources.toml").write_text(
        f'[pipedrive.stages]\ncolumns = {{ a = "BIGINT", b = "VARCHAR", c = "BIGINT" }}\n{declaration}\n'.replace(
            '["b", "c"]', '["a", "b", "c"]'
        )
    )
    with pytest.raises(SourceError, match=words):
        declared(tmp_path)


# The steps of the seed must be this account's: another account's names stop the build.


def test_the_shipped_steps_fit_the_export_they_ship_with(built):
    problems = query(built, f"select funnel_step, problem from {SCHEMA}.int_funnel_steps where problem is not null")
    assert problems == []
    assert len(query(built, f"select * from {SCHEMA}.int_funnel_steps")) == 11


def test_another_accounts_stage_names_stop_the_build(project, runner):
    names = ["1,Qualified", "2,Contact Made", "3,Demo Scheduled", "4,Proposal Made", "5,Negotiation",
             "6,Closing", "7,Implementation/Onboarding", "8,Follow-up/Customer Success", "9,Renewal/Expansion"]  # fmt: skip
    (project / "raw_data" / "stages.csv").write_text("stage_id,stage_name\n" + "".join(f"{n}\n" for n in names))
    result = runner.invoke(app, ["build"])
    assert result.exit_code == 1
    assert error_line(result) == (
        "Error: 1 data test(s) failed: funnel_steps_match_the_export (4 rows); the last good build is unchanged. "
        "The failing rows: funnel test --failures."
    )
    # The failing rows name the step, the stage id, both names and the way out.
    assert "1.0 | Step 1: Lead Generation | 1 | Qualified |  | name differs: funnel steps --write" in result.stderr
    assert "4.0 | Step 4: Proposal/Quote Preparation | 4 | Proposal Made |" in result.stderr
    assert not (project / "target" / "dev.duckdb").exists()  # nothing was published


def test_an_unknown_stage_or_activity_type_stops_the_build(project, runner):
    stages = project / "raw_data" / "stages.csv"
    stages.write_text("\n".join(stages.read_text().splitlines()[:-1]) + "\n")  # stage 9 is gone
    types = project / "raw_data" / "activity_types.csv"
    types.write_text(types.read_text().replace(",sc_2", ",call"))
    result = runner.invoke(app, ["build"])
    assert result.exit_code == 1
    assert "funnel_steps_match_the_export (2 rows)" in error_line(result)
    assert "3.1 | Step 3.1: Sales Call 2 |  |  | sc_2 | no such type: funnel steps --write" in result.stderr
    assert "9.0 | Step 9: Renewal/Expansion | 9 |  |  | no such stage: funnel steps --write" in result.stderr


def test_the_user_may_lower_the_steps_test_to_a_warning(project, runner):
    stages = project / "raw_data" / "stages.csv"
    stages.write_text(stages.read_text().replace("Lead Generation", "Inbound"))
    tests = project / "sql" / "intermediate" / "tests.toml"
    tests.write_text(tests.read_text().replace('"problem is null"', '"problem is null"\nseverity = "warn"'))
    result = runner.invoke(app, ["build"])
    assert result.exit_code == 0, result.output
    assert "WARN  test   funnel_steps_match_the_export: 1 row" in result.stderr
