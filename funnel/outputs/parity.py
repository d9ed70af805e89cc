"""`funnel parity`: each exported table in PostgreSQL compared with the build, row for row;
or, with `--against`, two builds compared (a Spark build with a DuckDB one, say).

PostgreSQL rows are read back with COPY and cast to the DuckDB column types, so the
comparison is exact and done by DuckDB (`except all` both ways), at any size: NULL and ''
are different values on both sides.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from funnel.engine import database
from funnel.errors import ConfigError, ExportError
from funnel.outputs.files import columns, selected
from funnel.outputs.postgres import connect, conninfo, driver_message
from funnel.project.config import Environment
from funnel.quoting import quote_ident, quote_literal, relation
from funnel.workdir import scratch_folder

if TYPE_CHECKING:
    from funnel.project.manifest import Manifest


@dataclass(frozen=True)
class TableParity:
    table: str
    matching: int
    missing: int  # in DuckDB, not in PostgreSQL
    unexpected: int  # in PostgreSQL, not in DuckDB
    examples: list[tuple[str, tuple[Any, ...]]]  # ("missing" | "unexpected", row)
    exists: bool = True
    rounded: int = 0  # builds only: rows equal only with DOUBLE columns to DOUBLE_DIGITS significant digits
    widened: tuple[str, ...] = ()  # builds only: 'col BIGINT vs HUGEINT', columns of one kind, another width

    @property
    def ok(self) -> bool:
        return self.exists and not self.missing and not self.unexpected


def parity(
    manifest: Manifest,
    dsn: str | None = None,
    select: str | None = None,
    examples: int = 5,
) -> list[TableParity]:
    """Compare each selected model in DuckDB with its exported table in PostgreSQL, row for row."""
    import psycopg

    env = manifest.env
    names = selected(manifest, select)
    results = []
    with (
        database.read(env) as duck,
        connect(conninfo(env, dsn)) as pg,
        scratch_folder(env) as tmp,
    ):
        for name in names:
            built = columns(duck, env.schema, name)
            exists = pg.execute("select to_regclass(%s) is not null", [relation(env.schema, name)]).fetchone()
            if not (exists and exists[0]):
                total = duck.execute(f"select count(*) from {relation(env.schema, name)}").fetchone()
                results.append(TableParity(name, 0, int(total[0]) if total else 0, 0, [], exists=False))
                continue
            path = tmp / f"{name}.csv"
            select_list = ", ".join(quote_ident(c) for c, _ in built)
            try:
                with (
                    pg.cursor() as cur,
                    path.open("wb") as f,
                    cur.copy(f"copy (select {select_list} from {relation(env.schema, name)}) to stdout (format csv)") as copy,
                ):
                    for data in copy:
                        f.write(data)
            except psycopg.Error as e:
                raise ExportError(f"PostgreSQL table {env.schema}.{name} cannot be read back ({driver_message(e)}).") from None
            results.append(_compare(duck, env.schema, name, built, path, examples))
    return results


def _compare(duck: Any, schema: str, name: str, columns: list[tuple[str, str]], path: Path, examples: int) -> TableParity:
    spec = ", ".join(f"{quote_literal(c)}: {quote_literal(t)}" for c, t in columns)
    # PostgreSQL's CSV writes NULL as nothing and '' as "": read "" as '' (DuckDB's default reads
    # both as NULL, so a correct '' looked DIFFERENT and a wrong '' for NULL looked OK).
    pg_rows = (
        f"read_csv({quote_literal(str(path))}, header = false, auto_detect = false, allow_quoted_nulls = false, "
        f"columns = {{{spec}}})"
    )
    return _compare_relations(duck, relation(schema, name), pg_rows, name, examples)


# Two engines (or one with another thread count) add floating-point numbers in another order,
# so an average of DOUBLEs may differ in its last bits (1e-16 relative). Rows that differ
# only there match when DOUBLE columns are compared to this many significant digits.
DOUBLE_DIGITS = 12


@dataclass(frozen=True)
class ColumnsDiffer:
    """Two builds of a model whose columns (names or types) are not the same."""

    table: str
    ours: list[tuple[str, str]]
    theirs: list[tuple[str, str]]

    def describe(self) -> str:
        left, right = dict(self.ours), dict(self.theirs)
        names = dict.fromkeys([*left, *right])
        diffs = [f"{c} {left.get(c, '(none)')} vs {right.get(c, '(none)')}" for c in names if left.get(c) != right.get(c)]
        return "; ".join(diffs) or "same columns in another order"


# Engines give an aggregate another width: DuckDB's sum() of a BIGINT is a HUGEINT, Spark's a
# BIGINT; sum() of a DECIMAL(18,2) is DECIMAL(38,2) in one, DECIMAL(28,2) in the other. A
# model of the user's that leaves its sum uncast is built right by both: such columns
# compare by value (DuckDB widens one side), and the difference is reported, not an error.
# A narrower engine that overflowed shows as rows that differ.
_INTEGERS = frozenset(
    ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT", "UHUGEINT")
)


def _kind(column_type: str) -> str:
    """What a column's values are, apart from width: any integer; a DECIMAL of its scale."""
    if column_type in _INTEGERS:
        return "integer"
    if column_type.startswith("DECIMAL(") and column_type.endswith(")"):
        return "decimal scale " + column_type[len("DECIMAL(") : -1].partition(",")[2].strip()
    return column_type


def _widened(ours: list[tuple[str, str]], theirs: list[tuple[str, str]]) -> tuple[str, ...] | None:
    """The columns of one kind and another width ('deals BIGINT vs HUGEINT'), or None when the
    names, their order or a column's kind differ."""
    if [c for c, _ in ours] != [c for c, _ in theirs]:
        return None
    if any(_kind(a) != _kind(b) for (_, a), (_, b) in zip(ours, theirs, strict=True)):
        return None
    return tuple(f"{c} {a} vs {b}" for (c, a), (_, b) in zip(ours, theirs, strict=True) if a != b)


def compare_builds(manifest: Manifest, other: Environment, select: str | None = None, examples: int = 5) -> list[TableParity]:
    """Compare each selected model of `manifest.env`'s build with `other`'s build, row for row.

    Any engines: both envs' databases are DuckDB files (a Spark env's holds views over its
    Parquet), attached read-only side by side. Column names, their order and the kind of each
    must match: an integer or a DECIMAL of one scale may have another width (engines widen
    sums differently), compared by value and listed in `widened`. Rows are compared with
    `except all` both ways, so duplicates count. Rows that differ only in the last bits of
    DOUBLE columns (sums in another order) match to DOUBLE_DIGITS significant digits and are
    counted in `rounded`. Every model by default. Raises ExportError naming the model whose
    columns differ.
    """
    env = manifest.env
    if other.database == env.database:
        raise ConfigError(f"--against {other.name} is the env being checked; compare two envs, e.g. --env spark --against dev.")
    names = manifest.graph.select(select) if select else list(manifest.graph.order)
    with database.read(other):
        pass  # fail here, naming `other`, when it has no build
    results = []
    with database.read(env) as duck:
        duck.execute(f"attach {quote_literal(str(other.database))} as against (read_only)")
        for name in names:
            ours, theirs = _columns_in(duck, "ours", env.schema, name), _columns_in(duck, "against", other.schema, name)
            if not ours or not theirs:
                missing = env.name if not ours else other.name
                raise ExportError(f"model {name} is not in the build of env '{missing}'; run funnel build --env {missing} first.")
            widened = _widened(ours, theirs)
            if widened is None:
                raise ExportError(
                    f"model {name}: env '{env.name}' and env '{other.name}' built different columns "
                    f"({ColumnsDiffer(name, ours, theirs).describe()}); rebuild both from the same project."
                )
            pair = relation(env.schema, name), f"against.{relation(other.schema, name)}"
            result = _compare_relations(duck, *pair, name, examples)
            doubles = [c for c, t in ours if t == "DOUBLE"]
            if not result.ok and doubles:
                left, right = (_rounded(r, ours, doubles) for r in pair)
                rounded = _compare_relations(duck, left, right, name, examples)
                if rounded.ok:
                    result = TableParity(name, rounded.matching, 0, 0, [], rounded=result.missing)
            results.append(replace(result, widened=widened))
    return results


def _rounded(table: str, columns: list[tuple[str, str]], doubles: list[str]) -> str:
    """`table` with its DOUBLE columns as text to DOUBLE_DIGITS significant digits."""
    listed = ", ".join(
        f"printf('%.{DOUBLE_DIGITS - 1}e', {quote_ident(c)}) as {quote_ident(c)}" if c in doubles else quote_ident(c)
        for c, _ in columns
    )
    return f"(select {listed} from {table})"


def _catalog(duck: Any) -> str:
    row = duck.execute("select current_database()").fetchone()
    return str(row[0])


def _columns_in(duck: Any, catalog: str, schema: str, name: str) -> list[tuple[str, str]]:
    catalog = _catalog(duck) if catalog == "ours" else catalog
    return database.table_columns(duck, schema, catalog).get(name, [])


def _compare_relations(duck: Any, ours: str, theirs: str, name: str, examples: int) -> TableParity:
    total = duck.execute(f"select count(*) from {ours}").fetchone()[0]
    counts, shown = {}, []
    for kind, left, right in (("missing", ours, theirs), ("unexpected", theirs, ours)):
        # One pass per direction: the first rows that differ, each carrying how many differ.
        rows = duck.execute(
            f"select *, count(*) over () from (select * from {left} except all select * from {right}) limit {examples}"
        ).fetchall()
        counts[kind] = rows[0][-1] if rows else 0
        shown += [(kind, row[:-1]) for row in rows]
    return TableParity(name, total - counts["missing"], counts["missing"], counts["unexpected"], shown)
