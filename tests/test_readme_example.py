"""README's Models section against the example: every model it names is there, and a model
it does not name (a fork's own) is left out of the project its examples run in, with the
data tests and column descriptions that name it, and nothing else."""

from __future__ import annotations

from pathlib import Path

from funnel.project.scaffold import init

from . import readme_example
from .conftest import REPO

README = REPO / "README.md"


def test_every_model_the_readme_names_is_a_model_of_the_example() -> None:
    named = readme_example.named(README)
    assert len(named) >= 16
    assert sorted(named - set(readme_example.project_models(REPO / "sql"))) == []


def files(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text(encoding="utf-8") for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_model_the_readme_does_not_name_is_left_out_with_what_names_it(tmp_path: Path) -> None:
    init(tmp_path / "example")
    init(tmp_path / "fork")
    example_sql, sql = tmp_path / "example" / "sql", tmp_path / "fork" / "sql"
    readme_example.leave_out(example_sql, readme_example.unnamed(README, example_sql))  # as the README test's project
    (sql / "reporting" / "rep_my_extra.sql").write_text(
        "-- A manager's own view of the funnel.\nselect * from {{ ref('rep_sales_funnel_monthly') }}\n"
    )
    (sql / "tests" / "my_extra_is_not_empty.sql").write_text(
        'select 1 where not exists (select 1 from {{ ref( "rep_my_extra" ) }})\n'
    )
    with (sql / "reporting" / "tests.toml").open("a") as f:
        f.write('\n[[test]]\nmodel = "rep_my_extra"\ntype = "not_null"\ncolumns = ["month"]\n')
    with (sql / "reporting" / "columns.toml").open("a") as f:
        f.write('\n[rep_my_extra]\nmonth = "The month"\n')
    assert "rep_my_extra" in readme_example.unnamed(README, sql)

    readme_example.leave_out(sql, readme_example.unnamed(README, sql))

    example, fork = files(example_sql), files(sql)
    assert sorted(fork) == sorted(example)
    assert {name: text.rstrip() for name, text in fork.items()} == {name: text.rstrip() for name, text in example.items()}


def test_a_test_of_a_named_model_that_reads_an_unnamed_one_goes_too(tmp_path: Path) -> None:
    """A relationships test `to` the left-out model would name a model that is not there."""
    init(tmp_path / "fork")
    sql = tmp_path / "fork" / "sql"
    (sql / "seeds" / "my_targets.csv").write_text("funnel_step\n1.0\n")
    before = (sql / "reporting" / "tests.toml").read_text()
    with (sql / "reporting" / "tests.toml").open("a") as f:
        f.write(
            '\n[[test]]\nmodel = "rep_sales_funnel_monthly"\ntype = "relationships"\n'
            'columns = ["funnel_step"]\nto = "my_targets"\n'
        )

    readme_example.leave_out(sql, readme_example.unnamed(README, sql))

    assert not (sql / "seeds" / "my_targets.csv").exists()
    assert (sql / "reporting" / "tests.toml").read_text().rstrip() == before.rstrip()
