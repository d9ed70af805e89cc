"""`funnel` with the value rules off: an experiment for the benchmarks, never for users.

Every column is read by DuckDB's own typed CSV parser (lenient: '12.5' is 13 in a BIGINT
column), so a build costs what it would without the rules of README's "Value rules";
everything else (plan, models, data tests, record, publish, CLI) is funnel's. With
`bench.py build --other "python benchmarks/without_value_rules.py"` the difference between
the two ratios to the plain script is what the rules cost, in the same rounds.
"""

import dataclasses
import sys

from funnel import loading
from funnel.cli import app

loading.CsvLoad.rule = lambda self, column: None  # type: ignore[method-assign]
_with_rules = loading._select


def _select(load: loading.CsvLoad) -> str:
    return _with_rules(dataclasses.replace(load, conditional=()))


loading._select = _select

if __name__ == "__main__":
    sys.argv[0] = "funnel"
    app()
