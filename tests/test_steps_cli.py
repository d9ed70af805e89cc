"""`funnel steps`: the export's stages beside the project's steps, and --write (issue 21, item 2)."""

from __future__ import annotations

import csv

from funnel.cli import app

STAGES = """\
stage_id,stage_name,pipeline_id,pipeline_name,order_nr,deal_probability
1,Qualified,1,Sales,1,10
2,Demo Scheduled,1,Sales,3,
3,Contact Made,1,Sales,2,
4,Proposal Made,1,Sales,4,50
5,Onboarding,2,Customer Success,1,
6,Renewal,2,Customer Success,2,
7,Expansion,2,Customer Success,3,
"""
TYPES = "id,name,active,type\n1,Call,Yes,call\n2,Meeting,Yes,meeting\n3,Task,Yes,task\n4,Email,Yes,email\n"


def seed_rows(project) -> list[list[str]]:
    with (project / "sql" / "seeds" / "funnel_steps.csv").open(newline="") as f:
        return list(csv.reader(f))


def two_pipelines(project) -> None:
    (project / "raw_data" / "stages.csv").write_text(STAGES)
    (project / "raw_data" / "activity_types.csv").write_text(TYPES)


def test_the_shipped_steps_are_the_sample_exports(project, runner):
    result = runner.invoke(app, ["steps"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"{project / 'raw_data' / 'stages.csv'}: 9 stages; calls: meeting, sc_2"
    assert lines[3].split() == ["1.0", "Step", "1:", "Lead", "Generation", "1.0", "Step", "1:", "Lead", "Generation"]
    assert "✗" not in result.stdout
    assert lines[-1] == "The project's steps are the export's."


def test_write_gives_the_shipped_seed_back_in_the_exports_own_spelling(project, runner):
    shipped = seed_rows(project)
    result = runner.invoke(app, ["steps", "--write"])
    assert result.exit_code == 0, result.output
    written = seed_rows(project)
    # The export spells stage 2 "Qualified lead"; everything else is the shipped seed.
    assert [row if row[0] != "2.0" else [*row[:1], "Step 2: Qualified Lead", *row[2:]] for row in written] == shipped
    assert written[2][1] == "Step 2: Qualified lead"
    assert runner.invoke(app, ["build"]).exit_code == 0


def test_another_account_is_marked_and_written_per_pipeline(project, runner):
    two_pipelines(project)
    shown = runner.invoke(app, ["steps", "--calls", "call,meeting"])
    assert shown.exit_code == 0, shown.output
    assert "pipeline Sales" in shown.stdout and "pipeline Customer Success" in shown.stdout
    assert " 1.0  Step 1: Qualified" in shown.stdout
    assert "Step 1: Lead Generation" in shown.stdout and "✗ name differs" in shown.stdout
    assert shown.stdout.splitlines()[-1].endswith("step(s) differ: funnel steps --write writes the export's steps.")

    written = runner.invoke(app, ["steps", "--write", "--calls", "call,meeting"])
    assert written.exit_code == 0, written.output
    assert "✗" not in written.stdout
    # In each pipeline: its stages in order_nr order numbered from 1, call 2.1 and 3.1.
    assert seed_rows(project) == [
        ["funnel_step", "kpi_name", "stage_id", "activity_type", "pipeline"],
        ["1.0", "Step 1: Qualified", "1", "", "Sales"],
        ["2.0", "Step 2: Contact Made", "3", "", "Sales"],
        ["2.1", "Step 2.1: Call", "", "call", "Sales"],
        ["3.0", "Step 3: Demo Scheduled", "2", "", "Sales"],
        ["3.1", "Step 3.1: Meeting", "", "meeting", "Sales"],
        ["4.0", "Step 4: Proposal Made", "4", "", "Sales"],
        ["1.0", "Step 1: Onboarding", "5", "", "Customer Success"],
        ["2.0", "Step 2: Renewal", "6", "", "Customer Success"],
        ["2.1", "Step 2.1: Call", "", "call", "Customer Success"],
        ["3.0", "Step 3: Expansion", "7", "", "Customer Success"],
        ["3.1", "Step 3.1: Meeting", "", "meeting", "Customer Success"],
    ]
    assert runner.invoke(app, ["steps"]).stdout.splitlines()[-1] == "The project's steps are the export's."


def test_one_pipeline_needs_no_pipeline_column(project, runner):
    (project / "raw_data" / "stages.csv").write_text(
        "".join(line + "\n" for line in STAGES.splitlines() if not line.endswith("Customer Success,3,") and ",2,Cust" not in line)
    )
    result = runner.invoke(app, ["steps", "--write", "--calls", ""])
    assert result.exit_code == 0, result.output
    assert seed_rows(project)[0] == ["funnel_step", "kpi_name", "stage_id", "activity_type"]
    assert [row[1] for row in seed_rows(project)[1:]] == [
        "Step 1: Qualified", "Step 2: Contact Made", "Step 3: Demo Scheduled", "Step 4: Proposal Made",
    ]  # fmt: skip


def test_a_call_type_the_export_lacks_is_a_usage_error(project, runner):
    two_pipelines(project)
    before = seed_rows(project)
    result = runner.invoke(app, ["steps", "--write", "--calls", "call,meting"])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "Error: Invalid value for '--calls': activity type 'meting' is not in activity_types.csv. Did you mean 'meeting'?"
    )
    assert seed_rows(project) == before  # nothing written


def test_a_pipeline_of_few_stages_has_fewer_call_steps(project, runner):
    two_pipelines(project)
    result = runner.invoke(app, ["steps", "--write", "--calls", "call,meeting,task"])
    assert result.exit_code == 0, result.output
    calls = [(row[0], row[3], row[4]) for row in seed_rows(project)[1:] if row[3]]
    assert calls == [
        ("2.1", "call", "Sales"), ("3.1", "meeting", "Sales"), ("4.1", "task", "Sales"),
        ("2.1", "call", "Customer Success"), ("3.1", "meeting", "Customer Success"),
    ]  # fmt: skip


def test_a_broken_stages_file_names_its_line(project, runner):
    (project / "raw_data" / "stages.csv").write_text("stage_id,stage_name\n1,Qualified\nx,Contact Made\n")
    result = runner.invoke(app, ["steps"])
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        f"Error: {project / 'raw_data' / 'stages.csv'} line 3, column stage_id: 'x' is not a whole number."
    )
