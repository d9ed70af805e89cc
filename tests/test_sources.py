"""The project declares its export in sql/sources.toml: a user adds a file of their export,
a model and a data test, and builds, without touching the package."""

from __future__ import annotations

import duckdb
import pytest

from funnel.cli import app
from funnel.errors import SourceError
from funnel.project.sources import SOURCES, declared

from .conftest import REPO, compiled


def error_line(result) -> str:
    return result.stderr.strip().splitlines()[-1]


def test_the_shipped_declaration_is_the_pipedrive_layout_generate_and_pull_write():
    assert declared(REPO / "sql") == SOURCES


def test_a_user_adds_a_file_a_model_and_a_test(built, runner):
    (built / "raw_data" / "invoices.csv").write_text("invoice_id,title,value\n100001,Acme renewal,1200.50\n100006,Bolt,99.00\n")
    declarations = built / "sql" / "sources.toml"
    declarations.write_text(
        declarations.read_text()
        + '\n[pipedrive.invoices]\ncolumns = { invoice_id = "BIGINT", title = "VARCHAR", value = "DECIMAL(12,2)" }\n'
    )
    (built / "sql" / "staging" / "stg_invoices.sql").write_text(
        "select invoice_id, title, value as deal_value from {{ source('pipedrive', 'invoices') }}"
    )
    (built / "sql" / "reporting" / "rep_deal_value.sql").write_text(
        "select sum(deal_value) as total_value, count(*) as deals from {{ ref('stg_invoices') }}"
    )
    (built / "sql" / "tests" / "deal_values_are_positive.sql").write_text(
        "select * from {{ ref('stg_invoices') }} where deal_value <= 0"
    )
    result = runner.invoke(app, ["build"])
    assert result.exit_code == 0, result.output
    assert f"load  source {'invoices':<40} new source" in result.stderr
    assert "run   model  rep_deal_value                           new model" in result.stderr
    with duckdb.connect(str(built / "target" / "dev.duckdb"), read_only=True) as con:
        total = con.execute("select total_value, deals from public_pipedrive_analytics.rep_deal_value").fetchone()
    assert total == (pytest.approx(1299.50), 2)
    manifest = compiled(built)
    assert "deal_values_are_positive" in {t.name for t in manifest.tests}
    # The new file follows the same strict rules as the six.
    (built / "raw_data" / "invoices.csv").write_text("invoice_id,title,value\n100001,Acme,12.5.0\n")
    bad = runner.invoke(app, ["build"])
    assert bad.exit_code == 1
    assert "invoices.csv line 2, column value: '12.5.0'" in error_line(bad)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('[pipedrive.deals]\ncolumn = { a = "BIGINT" }\n', "unknown key 'column'. Did you mean 'columns'?"),
        ('[pipedrive.deals]\ncolumns = { a = "INT8" }\n', "column a: type 'INT8' is not one funnel reads strictly"),
        ("[pipedrive.deals]\n", "needs columns = "),
        ('[pipedrive.deals]\ncolumns = { a = "VARCHAR" }\nrules = [{ column = "a" }]\n', "rules: each is"),
        ('[pipedrive.deals]\ncolumns = { a = "BIGINT" }\n\n[crm.deals]\ncolumns = { a = "BIGINT" }\n', "declared by two"),
        (
            '[pipedrive.deals]\ncolumns = { a = "BIGINT" }\n\n[crm.Deals]\ncolumns = { a = "BIGINT" }\n',
            "tables Deals and deals would be one table, as names ignore case; keep one.",
        ),
        ("[pipedrive\n", "invalid TOML"),
    ],
    ids=["key", "type", "no-columns", "rule", "twice", "twice-in-case", "toml"],
)
def test_a_bad_declaration_names_the_file_and_key(tmp_path, text, words):
    (tmp_path / "sources.toml").write_text(text)
    with pytest.raises(SourceError) as info:
        declared(tmp_path)
    assert words in str(info.value) and "sources.toml" in str(info.value)


def test_a_source_nobody_declared_is_named_with_the_declared_ones(project, runner):
    (project / "sql" / "staging" / "stg_persons.sql").write_text("select * from {{ source('pipedrive', 'persons') }}")
    result = runner.invoke(app, ["build"])
    assert result.exit_code == 1
    assert "source('pipedrive', 'persons') is not declared" in error_line(result)
