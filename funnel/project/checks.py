"""Data tests: declared in `sql/<layer>/tests.toml`, or SQL files in `sql/tests/`.

A test is a query returning the rows that break it; zero rows is PASS. A failing test of
severity `warn` is reported and the build goes on; severity `error` stops the build before
anything becomes visible.

tests.toml entries (one `[[test]]` table each):
    model = "rep_sales_funnel_monthly"
    type = "not_null" | "unique" | "accepted_values" | "relationships" | "expression" | "not_empty"
    columns = ["month"]          # not_null: each column; unique: the columns together
    values = [1.0, 2.0]          # accepted_values (with one column)
    to = "stg_stages"            # relationships: every value of the column is in `to`.`field`
    field = "stage_id"
    expression = "deals_count >= 0"   # expression: rows where it is not true fail
    severity = "error" | "warn"  # default error
"""

from __future__ import annotations

import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from funnel.errors import ModelError, did_you_mean, first_line, n_rows
from funnel.project.models import TESTS_FOLDER, Graph, discover
from funnel.project.sources import SOURCES, Source
from funnel.project.templates import load_macros, render
from funnel.quoting import quote_ident, relation

if TYPE_CHECKING:
    import duckdb

Severity = Literal["error", "warn"]
Status = Literal["PASS", "WARN", "ERROR"]
SEVERITIES: tuple[Severity, ...] = ("error", "warn")
TEST_KEYS = {"model", "type", "columns", "values", "to", "field", "expression", "severity", "name"}
TYPES = ("not_null", "unique", "accepted_values", "relationships", "expression", "not_empty")


@dataclass(frozen=True)
class DataTest:
    name: str
    model: str
    severity: Severity
    sql: str  # returns the failing rows
    path: Path
    description: str = ""
    depends_on: tuple[str, ...] = ()  # the models it reads: it reruns when one of them does
    sources: tuple[str, ...] = ()  # the source tables a SQL test reads: it reruns when one is reloaded


@dataclass(frozen=True)
class TestResult:
    test: DataTest
    failures: int
    seconds: float
    error: str | None = None  # the query itself failed
    reused: bool = False  # not rerun: nothing it reads changed since the committed build

    __test__ = False

    @property
    def status(self) -> Status:
        if self.error is not None:
            return "ERROR"
        if self.failures == 0:
            return "PASS"
        return "WARN" if self.test.severity == "warn" else "ERROR"


def collect(sql_dir: Path, project: Graph, sources: tuple[Source, ...] = SOURCES) -> list[DataTest]:
    """Every data test of the project, in a stable order (file, then position).

    Declared tests live in a `tests.toml` in any model folder; SQL tests in sql/tests/, where
    they may read the project's `sources` too.
    """
    tests: list[DataTest] = []
    for path in sorted(sql_dir.rglob("tests.toml")):
        tests.extend(_declared(path, project))
    files = discover(sql_dir)
    macros = load_macros(sql_dir)
    for path in sorted(p for p in (sql_dir / TESTS_FOLDER).rglob("*.sql") if p.is_file()):
        rendered = render(path, project.schema, files, variables=project.variables, sources=sources, macros=macros)
        settings = dict(rendered.settings)
        severity = settings.pop("severity", "error")
        description = settings.pop("description", "")
        if severity not in SEVERITIES or not isinstance(description, str) or settings:
            raise ModelError(f"{path}: config() takes severity='error'|'warn' and description='text' only.")
        model = rendered.refs[0] if rendered.refs else ""
        tests.append(DataTest(path.stem, model, severity, rendered.sql, path, description, rendered.refs, rendered.sources))
    names = [t.name for t in tests]
    for name in names:
        if names.count(name) > 1:
            raise ModelError(f"two data tests are named '{name}'; give one a name = \"...\".")
    return tests


def failures_of(test: DataTest) -> str:
    """The test's query as a subquery. The closing parenthesis goes on a line of its own: a
    SQL file may end in a `-- comment`."""
    return f"({test.sql}\n) as failures"


# Below this many input rows a test's own work is smaller than the cost of a query (about a
# millisecond each), so the tests run as one query; from here on, one at a time. At 3.9M rows
# (340k deals) the batch still peaks no higher than one by one (docs/benchmarks.md).
BATCH_BELOW_ROWS = 4_000_000


def run(
    con: duckdb.DuckDBPyConnection,
    tests: list[DataTest] | tuple[DataTest, ...],
    on_result: Any = None,
    input_rows: int | None = None,
) -> list[TestResult]:
    """Run `tests`, passing each result to `on_result(result)`.

    On a large build (`input_rows` unknown or at least BATCH_BELOW_ROWS) one query per test:
    DuckDB runs each in parallel inside, and memory holds one test's state at a time (a
    union of every test set the peak of a 5M-deal build). On a small one, one query for
    all; if it fails, one at a time, so that the broken test is the one that says so.
    """
    if input_rows is not None and input_rows < BATCH_BELOW_ROWS and len(tests) > 1:
        results = _run_batch(con, tests)
        if results is not None:
            for result in results:
                if on_result:
                    on_result(result)
            return results
    return [_run_one(con, test, on_result) for test in tests]


def _run_batch(con: duckdb.DuckDBPyConnection, tests: list[DataTest] | tuple[DataTest, ...]) -> list[TestResult] | None:
    """Every test's failure count in one query (each result gets an equal share of its
    time), or None when the query fails."""
    import duckdb

    started = time.perf_counter()
    query = " union all ".join(
        f"select {number} as test, count(*) as failures from {failures_of(test)}" for number, test in enumerate(tests)
    )
    try:
        counts = dict(con.execute(query).fetchall())
    except duckdb.Error:
        return None
    if len(counts) != len(tests):  # cannot happen (each test is closed in its own parentheses)
        return None
    share = (time.perf_counter() - started) / len(tests)
    return [TestResult(test, int(counts[number]), share) for number, test in enumerate(tests)]


def failed_summary(failed: list[TestResult]) -> str:
    """`3 data test(s) failed: a (1 row), b (query error), c (12 rows)`, the first three named."""
    parts = [f"{r.test.name} ({r.error})" if r.error else f"{r.test.name} ({n_rows(r.failures)})" for r in failed[:3]]
    more = f" and {len(failed) - 3} more" if len(failed) > 3 else ""
    return f"{len(failed)} data test(s) failed: {', '.join(parts)}{more}"


@dataclass(frozen=True)
class FailingRows:
    """The first rows that break a test, as text (what `funnel test --failures` shows)."""

    test: str
    status: str
    failures: int
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


def failing_rows(con: duckdb.DuckDBPyConnection, results: list[TestResult], limit: int = 5) -> list[FailingRows]:
    """For each failing result (WARN or ERROR, not a broken query), its first `limit` rows."""
    out = []
    for r in results:
        if r.status == "PASS" or r.error is not None:
            continue
        cursor = con.execute(f"select * from {failures_of(r.test)} limit {int(limit)}")
        columns = tuple(d[0] for d in cursor.description or ())
        rows = tuple(tuple("" if v is None else str(v) for v in row) for row in cursor.fetchall())
        out.append(FailingRows(r.test.name, r.status, r.failures, columns, rows))
    return out


def _run_one(con: duckdb.DuckDBPyConnection, test: DataTest, on_result: Any) -> TestResult:
    import duckdb

    started = time.perf_counter()
    try:
        row = con.execute(f"select count(*) from {failures_of(test)}").fetchone()
        result = TestResult(test, int(row[0]) if row else 0, time.perf_counter() - started)
    except duckdb.Error as e:
        message = first_line(e)
        result = TestResult(test, 0, time.perf_counter() - started, f"{test.path}: {message}")
    if on_result:
        on_result(result)
    return result


def _declared(path: Path, project: Graph) -> list[DataTest]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ModelError(f"{path}: invalid TOML: {e}.") from None
    unknown = set(data) - {"test"}
    if unknown:
        raise ModelError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}; declare tests as [[test]] tables.")
    tests = []
    for number, entry in enumerate(data.get("test", []), start=1):
        tests.extend(_expand(f"{path}: test #{number}", path, entry, project))
    return tests


def _expand(where: str, path: Path, entry: dict[str, Any], project: Graph) -> list[DataTest]:
    for key in entry:
        if key not in TEST_KEYS:
            raise ModelError(f"{where}: unknown key '{key}'." + did_you_mean(key, sorted(TEST_KEYS)))
    model, kind = entry.get("model"), entry.get("type")
    if model not in project.models:
        raise ModelError(f"{where}: model '{model}' does not exist." + did_you_mean(str(model), list(project.models)))
    if kind not in TYPES:
        raise ModelError(f"{where}: type '{kind}' is not one of {', '.join(TYPES)}.")
    severity = entry.get("severity", "error")
    if severity not in SEVERITIES:
        raise ModelError(f"{where}: severity '{severity}' must be 'error' or 'warn'.")
    table = relation(project.schema, model)
    columns = entry.get("columns", [])
    if isinstance(columns, str):
        columns = [columns]
    if kind not in ("expression", "not_empty") and not columns:
        raise ModelError(f'{where}: {kind} needs columns = ["..."].')

    reads = (model, entry["to"]) if kind == "relationships" and "to" in entry else (model,)

    def make(suffix: str, sql: str) -> DataTest:
        name = entry.get("name", f"{kind}_{model}" + (f"_{suffix}" if suffix else ""))
        return DataTest(name, model, severity, sql, path, depends_on=reads)

    if kind == "not_empty":
        return [make("", f"select 'no rows' as problem where not exists (select 1 from {table})")]
    if kind == "not_null":
        return [make(c, f"select * from {table} where {quote_ident(c)} is null") for c in columns]
    cols = ", ".join(quote_ident(c) for c in columns)
    if kind == "unique":
        sql = f"select {cols} from {table} where ({cols}) is not null group by {cols} having count(*) > 1"
        return [make("__".join(columns), sql)]
    if kind == "accepted_values":
        values = entry.get("values")
        if len(columns) != 1 or not isinstance(values, list) or not values:
            raise ModelError(f"{where}: accepted_values needs one column and values = [...].")
        listed = ", ".join(_literal(v) for v in values)
        return [make(columns[0], f"select * from {table} where {cols} not in ({listed})")]
    if kind == "relationships":
        to, field = entry.get("to"), entry.get("field", columns[0])
        if to not in project.models:
            raise ModelError(f"{where}: to = '{to}' is not a model." + did_you_mean(str(to), list(project.models)))
        # An anti join, not `not exists (...)`: DuckDB runs the correlated form several times
        # slower (0.05-0.12 s against 0.013 s over the 4.5M rows of a 1M-deal stage history).
        sql = (
            f"select child.* from {table} as child anti join {relation(project.schema, to)} as parent "
            f"on parent.{quote_ident(field)} = child.{cols} where child.{cols} is not null"
        )
        return [make(f"{columns[0]}__{to}", sql)]
    expression = entry.get("expression")
    if not isinstance(expression, str) or not entry.get("name"):
        raise ModelError(f'{where}: an expression test needs expression = "..." and a name.')
    return [make("", f"select * from {table} where not coalesce(({expression}), false)")]


def _literal(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ModelError(f"accepted value {value!r} must be a number or a string.")
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return repr(value)
