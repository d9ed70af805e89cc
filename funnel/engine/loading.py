"""Loading the declared CSV files into DuckDB, strictly.

Nothing is sniffed: a header that differs, a value that does not fit its type, or a row
with the wrong number of fields stops the build with the file, line and column. What
"fits" means for each type is in funnel/project/values.py; the files are declared in sources.py.
"""

from __future__ import annotations

import csv
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from funnel.engine.csv_file import check_header, first_non_utf8_line, mixed_line_ends, quote, short, where
from funnel.errors import SourceError, first_line
from funnel.project.sources import Conditional
from funnel.project.values import Rule
from funnel.quoting import quote_ident, quote_literal

if TYPE_CHECKING:
    import duckdb

REJECTS = "_funnel_rejects"  # DuckDB appends every bad row of every read_csv here
PLAIN_READ = "_funnel_plain_read"  # the file read as text, on the error path only
MAX_BAD_TEXTS = 10_000  # distinct bad values listed for the line search; beyond, Python rules
BAD_VALUE = "funnel: a value breaks its rule"  # raised by error() in the load query
TYPE_WORDS = {"JSON": "valid JSON"}


@dataclass(frozen=True)
class CsvLoad:
    """One CSV file to load into `target` with exactly `columns`."""

    path: Path
    target: str
    columns: dict[str, str]
    timestamp_format: str | None = None
    conditional: tuple[Conditional, ...] = ()
    optional: bool = False  # absent: an empty table of `columns`
    patterns: tuple[tuple[str, str], ...] = ()
    optional_columns: tuple[str, ...] = ()  # the last columns, which the file may leave out (NULL)

    def rule(self, column: str) -> Rule | None:
        for name, pattern in self.patterns:
            if name == column:
                return Rule.text(pattern)
        return Rule.of(self.columns[column], self.timestamp_format)

    @property
    def absent(self) -> bool:
        """An optional file that is not there (nothing at all at its path: a broken link is
        an export that is not what it claims, and stays an error)."""
        return self.optional and not os.path.lexists(self.path)


@dataclass(frozen=True, order=True)
class BadLine:
    """One line that breaks the file's declaration, and how to say so."""

    line: int
    message: str
    action: str = "fix or remove the row"


def load_csvs(con: duckdb.DuckDBPyConnection, loads: list[CsvLoad], on_loaded: Any = None) -> list[int]:
    """Load every file into its table; return the row counts.

    Headers are checked first. Columns with a value rule are read as text and checked in
    the same pass (an error() call stops the query at the first bad value); only then is
    the file scanned again, slowly, to name the first bad line. DuckDB collects rows of
    the wrong shape (`store_rejects`) instead of stopping at the first.
    """
    import duckdb

    headers = {id(load): check_header(load.path, list(load.columns), load.optional_columns) for load in loads if not load.absent}
    counts = []
    for declared in loads:
        started = time.perf_counter()
        load = declared
        if not load.absent:  # read the columns the file has; the optional ones it leaves out are NULL
            load = replace(declared, columns={c: declared.columns[c] for c in headers[id(declared)]})
        if load.absent:
            columns = ", ".join(f"{quote_ident(c)} {t}" for c, t in load.columns.items())
            con.execute(f"create or replace table {load.target} ({columns})")
            counts.append(0)
            if on_loaded:
                on_loaded(load, 0, time.perf_counter() - started)
            continue
        try:
            left_out = [(c, t) for c, t in declared.columns.items() if c not in load.columns]
            nulls = "".join(f", cast(null as {t}) as {quote_ident(c)}" for c, t in left_out)
            row = con.execute(f"create or replace table {load.target} as select *{nulls} from ({_select(load)})").fetchone()
            bad = _rejects(con, load)
        except duckdb.InvalidInputException as e:
            if BAD_VALUE not in str(e):
                raise _read_error(load, e) from None
            bad, rows = _diagnose(con, load)
            if not bad:  # cannot happen (same rules); still say which value DuckDB stopped at
                raise SourceError(f"{load.path}: {short(first_line(e))}; fix or remove that value.") from None
            raise SourceError(_describe(load.path, bad, more_values=max(rows - 1, 0))) from None
        if bad:
            raise SourceError(_describe(load.path, bad))
        counts.append(int(row[0]) if row else 0)
        if on_loaded:
            on_loaded(declared, counts[-1], time.perf_counter() - started)
    return counts


def _select(load: CsvLoad) -> str:
    """select <each column, checked and cast> from read_csv(<checked columns as text>)."""
    read_as, expressions = {}, []
    for column, sql_type in load.columns.items():
        name = quote_ident(column)
        rule = load.rule(column)
        conditions = [c for c in load.conditional if c.column == column]
        read_as[column] = "VARCHAR" if rule or conditions else sql_type
        fail = f"error({quote_literal(BAD_VALUE + ' in column ' + column + ': ')} || left({name}, 80))"
        if rule is not None:
            parsed = rule.sql_parse(name)
            checked = f"when {rule.sql_ok(name, parsed)} then {rule.sql_value(parsed)} when {name} is null then null"
            expressions.append(f"case {checked} else {fail} end as {name}")
        elif conditions:
            # Only the rows whose when-column matches are parsed (see Rule.sql_ok_once).
            whens = " ".join(
                f"when {quote_ident(c.when_column)} in ({', '.join(map(quote_literal, c.when_values))}) "
                f"then (case when {c.rule.sql_ok_once(name)} then {name} else {fail} end)"
                for c in conditions
            )
            expressions.append(f"case when {name} is null then null {whens} else {name} end as {name}")
        else:
            expressions.append(name)
    return f"select {', '.join(expressions)} from {_read_csv(load.path, read_as)}"


def _read_csv(path: Path, columns: dict[str, str]) -> str:
    declared = ", ".join(f"{quote_literal(c)}: {quote_literal(t)}" for c, t in columns.items())
    options = [
        "header = true",
        "auto_detect = false",
        "delim = ','",
        "quote = '\"'",
        "escape = '\"'",
        "encoding = 'utf-8'",
        "store_rejects = true",
        f"rejects_table = '{REJECTS}'",
        f"rejects_scan = '{REJECTS}_scan'",
        f"columns = {{{declared}}}",
    ]
    return f"read_csv({quote_literal(str(path))}, {', '.join(options)})"


def _rejects(con: duckdb.DuckDBPyConnection, load: CsvLoad) -> list[BadLine]:
    rows = con.execute(
        f"select line, line_byte_position, column_name, error_type, csv_line, error_message "
        f"from {REJECTS} order by line, column_idx"
    ).fetchall()
    lines = _physical_lines(load.path, [row[1] for row in rows])
    return [_describe_reject(load, lines.get(row[1]) or row[0], *row[2:]) for row in rows]


@dataclass(frozen=True)
class ValueCheck:
    """A rule on the column at `index`, in every row or (`when`) in the rows whose column
    at `when` is one of `values`."""

    index: int
    rule: Rule
    when: int | None = None
    values: tuple[str, ...] = ()

    def sql_broken(self, names: list[str]) -> str:
        """A SQL predicate: the row breaks this check."""
        value = quote_ident(names[self.index])
        if self.when is None:
            broken = f"not coalesce({self.rule.sql_ok(value, self.rule.sql_parse(value))}, false)"
            return f"({value} is not null and {broken})"
        applies = f"{quote_ident(names[self.when])} in ({', '.join(map(quote_literal, self.values))})"
        return f"({applies} and {value} is not null and not coalesce({self.rule.sql_ok_once(value)}, false))"


def _value_checks(load: CsvLoad) -> list[ValueCheck]:
    names = list(load.columns)
    checks = [ValueCheck(i, rule) for i, c in enumerate(names) if (rule := load.rule(c)) is not None]
    for c in load.conditional:
        checks.append(ValueCheck(names.index(c.column), c.rule, names.index(c.when_column), c.when_values))
    return checks


def _diagnose(con: duckdb.DuckDBPyConnection, load: CsvLoad) -> tuple[list[BadLine], int]:
    """After the load query stopped at a bad value: the rows of the wrong shape, the first
    bad value with its line, and how many rows have a bad value.

    DuckDB reads the file again as text and lists the bad values (the same SQL rules, so
    the same verdicts); Python then reads it once more, only to find the first line that
    holds one of them (DuckDB does not number lines).
    """
    import duckdb

    names, checks = list(load.columns), _value_checks(load)
    text = {c: ("VARCHAR" if any(names[k.index] == c for k in checks) else t) for c, t in load.columns.items()}
    try:
        con.execute(f"create or replace temp table {PLAIN_READ} as select * from {_read_csv(load.path, text)}")
    except duckdb.InvalidInputException as e:
        raise _read_error(load, e) from None
    try:
        bad = _rejects(con, load)
        broken = [check.sql_broken(names) for check in checks]
        (rows,) = con.execute(f"select count(*) from {PLAIN_READ} where {' or '.join(broken)}").fetchone() or (0,)
        texts: list[set[str] | None] = []
        for check, where in zip(checks, broken, strict=True):
            found = con.execute(
                f"select distinct {quote_ident(names[check.index])} from {PLAIN_READ} where {where} limit {MAX_BAD_TEXTS + 1}"
            ).fetchall()
            texts.append({v for (v,) in found} if len(found) <= MAX_BAD_TEXTS else None)
    finally:
        con.execute(f"drop table if exists {PLAIN_READ}")
    first = _first_bad_value(load, checks, texts)
    return bad + ([first] if first else []), rows


def _read_error(load: CsvLoad, error: Exception) -> SourceError:
    """A reader error that stopped the whole file, said with its line where we can find it."""
    if "unicode" in str(error).lower():
        line = first_non_utf8_line(load.path)
        return SourceError(f"{where(load.path, line)}: bytes that are not UTF-8; save the file as UTF-8 and rebuild.")
    return mixed_line_ends(load.path) or SourceError(f"{load.path}: {short(first_line(error), 200)}")


def _describe_reject(load: CsvLoad, line: int, column: str, kind: str, csv_line: str, message: str) -> BadLine:
    at = where(load.path, line)
    if kind == "CAST":
        value = _cast_value(message)
        return BadLine(line, f"{at}, column {column}: {quote(value)} is not {_type_words(load.columns[column])}")
    if kind in ("MISSING COLUMNS", "TOO MANY COLUMNS"):
        found = csv_line.count(",") + 1
        fields = f"{at}: {found} fields, expected {len(load.columns)} ({quote(csv_line)})"
        return BadLine(line, fields, "fix the row's commas or quoting")
    if kind == "INVALID ENCODING":
        return BadLine(line, f"{at}: bytes that are not UTF-8", "save the file as UTF-8 and rebuild")
    if kind == "UNQUOTED VALUE":
        return BadLine(line, f"{at}, column {column}: a quote is not closed", "close the quote or remove the row")
    if kind == "LINE SIZE OVER MAXIMUM":
        return BadLine(line, f"{at}: the line is longer than DuckDB's 2 MB limit", "shorten the field")
    return BadLine(line, f"{at}, column {column}: {short(first_line(message), 200)}")


def _cast_value(message: str) -> str:
    start = message.find('Could not convert string "')
    end = message.rfind('" to')
    return message[start + len('Could not convert string "') : end] if 0 <= start < end else "?"


def _describe(path: Path, bad: list[BadLine], more_values: int = 0) -> str:
    """The first bad line, and how many more there are."""
    first = min(bad)
    more_lines = len({b.line for b in bad}) - 1 + more_values
    more = f" ({more_lines} more bad line{'s' if more_lines != 1 else ''})" if more_lines else ""
    return f"{first.message}{more}; {first.action}."


def _first_bad_value(load: CsvLoad, checks: list[ValueCheck], texts: list[set[str] | None]) -> BadLine | None:
    """The first line holding a bad value: one of `texts` for its check (or, where DuckDB
    found too many to list, any value the check's Python rule refuses)."""
    names = list(load.columns)
    first_candidate = _first_line_with_any(load.path, texts)
    with load.path.open(encoding="utf-8-sig", errors="replace", newline="") as f:
        reader = csv.reader(f)
        next(reader, None)
        start = reader.line_num + 1
        for row in reader:
            line, start = start, reader.line_num + 1
            if start <= first_candidate or len(row) != len(names):
                continue  # before any line holding a bad text, or of the wrong shape (a reject)
            for check, bad in zip(checks, texts, strict=True):
                value = row[check.index]
                if value == "" or (check.when is not None and row[check.when] not in check.values):
                    continue  # an empty field is NULL, as in DuckDB
                if value in bad if bad is not None else check.rule.problem(value):
                    column = names[check.index]
                    if check.when is not None:
                        column += f" ({names[check.when]} {short(row[check.when], 30)})"
                    problem = check.rule.problem(value) or check.rule.words()
                    return BadLine(line, f"{where(load.path, line)}, column {column}: {quote(value)} {problem}")
    return None


def _first_line_with_any(path: Path, texts: list[set[str] | None]) -> int:
    """The first line whose bytes contain one of the bad texts: a fast scan (bytes.find on
    large blocks) that lets the exact, csv-parsing scan skip the lines before it. 1 when
    that cannot be known: many texts, or texts a CSV writes differently (quotes, line ends)."""
    if any(t is None for t in texts):
        return 1
    needles = {t.encode() for group in texts if group for t in group}
    if not needles or len(needles) > 20 or any(b'"' in n or b"\n" in n or b"\r" in n for n in needles):
        return 1
    overlap = max(len(n) for n in needles)
    newlines, tail = 0, b""
    with path.open("rb") as f:
        while block := f.read(1 << 23):
            data = tail + block
            found = [i for i in (data.find(n) for n in needles) if i >= 0]
            if found:
                return newlines - tail.count(b"\n") + data.count(b"\n", 0, min(found)) + 1
            newlines += block.count(b"\n")
            tail = data[-overlap:]
    return 1


def _type_words(sql_type: str) -> str:
    if sql_type.startswith("ENUM("):
        return "one of " + sql_type[len("ENUM(") : -1].replace("'", "")
    return TYPE_WORDS.get(sql_type.split("(")[0], sql_type)


def _physical_lines(path: Path, positions: list[int | None]) -> dict[int, int]:
    """DuckDB's `line` counts records, not lines, and a quoted newline makes them differ;
    the byte position of each record gives the line an editor shows. One pass."""
    wanted = sorted({p for p in positions if p is not None})
    lines: dict[int, int] = {}
    newlines, offset = 0, 0
    with path.open("rb") as f:
        for position in wanted:
            chunk = f.read(position - offset)
            newlines += chunk.count(b"\n")
            offset = position
            lines[position] = newlines + 1
    return lines
