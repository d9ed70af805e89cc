"""`funnel` with the value rules off: an experiment for the benchmarks, never for users.

Every file is read as the plain script reads it: DuckDB's own typed CSV parser with the
declared timestamp format (lenient: '12.5' is 13 in a BIGINT column). Everything else (plan,
models, data tests, record, publish, CLI) is funnel's. With
`bench.py build --other "python benchmarks/without_value_rules.py"` the difference between
the two ratios to the plain script is what the rules of README's "Value rules" cost, in the
same rounds.
"""

import sys

from funnel.cli import app
from funnel.engine import loading
from funnel.quoting import quote_literal


def _select(load: loading.CsvLoad) -> str:
    reading = loading._read_csv(load.path, load.columns)
    if load.timestamp_format:
        reading = f"{reading[:-1]}, timestampformat = {quote_literal(load.timestamp_format)})"
    return f"select * from {reading}"


loading._select = _select

if __name__ == "__main__":
    sys.argv[0] = "funnel"
    app()
