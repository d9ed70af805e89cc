"""The export's CSV files read by Spark, as strictly as the DuckDB loader reads them.

Spark reads every column as text; each value is checked against its declared type with
the grammar below and converted only then, in the same pass that writes the typed table as
Parquet. Every row carries the first problem it has (column and value) or nothing, so one
pass tells whether the file is clean. A file that is not stops the build with one line:
the file, the column, the value, and the line number, which funnel finds by reading the
file from the start when it is on a local disk (Spark does not keep line numbers).

The grammar accepts a subset of what DuckDB's CSV reader accepts (no sign on numbers, two
digits for months), never more: a value either engine reads, both read the same way.
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from funnel.engine.csv_file import check_header, mixed_line_ends
from funnel.engine.loading import TYPE_WORDS
from funnel.errors import SourceError
from funnel.project.sources import TS, Conditional
from funnel.project.values import FIRST_YEAR, LAST_YEAR, Rule

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

PROBLEM, VALUE, CORRUPT = "_funnel_problem", "_funnel_value", "_funnel_corrupt"
CONDITIONAL = "_funnel_rule_"  # + the index of a source's conditional rule, as a problem label
# strftime directive -> (regular expression, Spark datetime pattern)
DIRECTIVES = {
    "%Y": (r"[0-9]{4}", "yyyy"),
    "%m": (r"[0-9]{2}", "MM"),
    "%d": (r"[0-9]{2}", "dd"),
    "%H": (r"[0-9]{2}", "HH"),
    "%M": (r"[0-9]{2}", "mm"),
    "%S": (r"[0-9]{2}", "ss"),
    "%f": (r"[0-9]{6}", "SSSSSS"),  # six digits, as the DuckDB loader's round trip demands
}
DECIMAL = re.compile(r"DECIMAL\((\d+),\s*(\d+)\)")
SIMPLE_TYPES = ("BIGINT", "INTEGER", "VARCHAR", "JSON", "TIMESTAMP", "DOUBLE", "DATE", "BOOLEAN")


@dataclass(frozen=True)
class SparkCsv:
    """One CSV file to read into a Parquet table with exactly `columns`."""

    path: Path
    columns: dict[str, str]  # name -> DuckDB type, as declared
    timestamp_format: str | None = None
    conditional: tuple[Conditional, ...] = ()  # new_value of stage_id rows is a whole number, ...
    optional: bool = False  # absent: an empty table of `columns`
    patterns: tuple[tuple[str, str], ...] = ()  # VARCHAR columns whose values match a pattern
    optional_columns: tuple[str, ...] = ()  # the last columns, which the file may leave out (NULL)


def load(spark: SparkSession, source: SparkCsv, out: str) -> int:
    """Read, check and convert `source` into Parquet at `out`; return its row count.

    Raises SourceError naming file, line, column and value for the first bad value.
    """
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType, StructField, StructType

    if source.optional and not os.path.lexists(source.path):
        return _empty(spark, source, out)
    present = check_header(source.path, list(source.columns), source.optional_columns)
    left_out = {c: t for c, t in source.columns.items() if c not in present}  # optional columns: NULL
    source = replace(source, columns={c: source.columns[c] for c in present})
    if source.path.is_file() and (mixed := mixed_line_ends(source.path)):
        raise mixed
    rules = {name: _rule(source, name, sql_type) for name, sql_type in source.columns.items()}
    schema = StructType([StructField(c, StringType()) for c in source.columns] + [StructField(CORRUPT, StringType())])
    text = (
        spark.read.schema(schema)
        .option("header", True)
        .option("multiLine", True)  # quoted values may hold line breaks, as DuckDB allows
        .option("quote", '"')
        .option("escape", '"')
        .option("encoding", "UTF-8")
        .option("mode", "PERMISSIVE")
        .option("columnNameOfCorruptRecord", CORRUPT)
        .csv(str(source.path))
    )
    problem: Column = F.when(F.col(CORRUPT).isNotNull(), F.lit("fields"))
    value: Column = F.when(F.col(CORRUPT).isNotNull(), F.col(CORRUPT))
    for name, (bad, _) in rules.items():
        problem = problem.when(bad, F.lit(name))
        value = value.when(bad, F.col(name))
    for i, c in enumerate(source.conditional):
        # The same rule as the DuckDB loader's: the text column must fit `c.type` where it applies.
        spelled = SparkCsv(source.path, source.columns, c.format or source.timestamp_format)
        bad_spelling, _ = _rule(spelled, c.column, c.type)
        applies = F.col(c.when_column).isin(*c.when_values) & bad_spelling
        problem = problem.when(applies, F.concat(F.lit(f"{CONDITIONAL}{i}:"), F.col(c.when_column)))
        value = value.when(applies, F.col(c.column))
    typed = text.select(
        # Converted only when valid: Spark's ANSI casts fail the whole job on a bad value.
        *[F.when(~bad, converted).alias(name) for name, (bad, converted) in rules.items()],
        *[F.lit(None).cast(_spark_type(sql_type)).alias(name) for name, sql_type in left_out.items()],
        problem.alias(PROBLEM),
        value.alias(VALUE),
    )
    typed.write.mode("errorifexists").parquet(out)
    written = spark.read.parquet(out)
    bad_rows = written.where(F.col(PROBLEM).isNotNull())
    first = bad_rows.select(PROBLEM, VALUE).limit(1).collect()
    if first:
        raise SourceError(_describe(source, first[0][0], first[0][1], bad_rows.count()))
    return int(written.count())


def _empty(spark: SparkSession, source: SparkCsv, out: str) -> int:
    """An optional file the export does not have: an empty table of its declared columns."""
    ddl = ", ".join(f"`{name}` {_spark_type(sql_type)}" for name, sql_type in source.columns.items())
    spark.createDataFrame([], ddl).write.mode("errorifexists").parquet(out)
    return 0


def _spark_type(sql_type: str) -> str:
    upper = sql_type.upper()
    if upper == "TIMESTAMP":
        return "TIMESTAMP_NTZ"
    if upper.startswith("ENUM(") or upper == "JSON":
        return "STRING"
    if upper == "VARCHAR":
        return "STRING"
    return upper


def table(spark: SparkSession, out: str, columns: dict[str, str]) -> DataFrame:
    """The typed table `load` wrote, with the declared columns only."""
    return spark.read.parquet(out).select(*columns)


def _rule(source: SparkCsv, name: str, sql_type: str) -> tuple[Column, Column]:
    """(is this value bad, the value converted) for one column of declared `sql_type`."""
    from pyspark.sql import functions as F

    v = F.col(name)
    upper = sql_type.upper()
    if upper in ("BIGINT", "INTEGER"):
        spark_type = "bigint" if upper == "BIGINT" else "int"
        return v.isNotNull() & (~v.rlike(r"^-?[0-9]+$") | v.try_cast(spark_type).isNull()), v.cast(spark_type)
    if match := DECIMAL.fullmatch(upper):
        precision, scale = int(match.group(1)), int(match.group(2))
        fraction = rf"(\.[0-9]{{1,{scale}}})?" if scale else ""
        grammar = rf"^-?[0-9]{{1,{precision - scale}}}{fraction}$"
        return v.isNotNull() & ~v.rlike(grammar), v.cast(f"decimal({precision},{scale})")
    if upper == "DOUBLE":
        grammar = r"^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$"
        return v.isNotNull() & ~v.rlike(grammar), v.cast("double")
    if upper == "BOOLEAN":
        return v.isNotNull() & ~v.isin("true", "false"), v.cast("boolean")
    if upper == "DATE":
        return v.isNotNull() & (~v.rlike(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$") | v.try_cast("date").isNull()), v.cast("date")
    if upper == "TIMESTAMP":
        grammar, pattern = _timestamp_format(source.timestamp_format or TS)
        parsed = F.try_to_timestamp(v, F.lit(pattern))
        outside = ~F.year(parsed).between(FIRST_YEAR, LAST_YEAR)  # the years the DuckDB loader accepts
        return v.isNotNull() & (~v.rlike(grammar) | parsed.isNull() | outside), F.to_timestamp_ntz(v, F.lit(pattern))
    if upper.startswith("ENUM("):
        return v.isNotNull() & ~v.isin(*_enum_values(sql_type)), v
    if upper == "JSON":
        return v.isNotNull() & F.try_parse_json(v).isNull(), v
    if upper == "VARCHAR" and (declared := dict(source.patterns).get(name)) is not None:
        return v.isNotNull() & (v.contains("\ufffd") | ~v.rlike(f"^(?:{declared})$")), v
    if upper == "VARCHAR":
        # Spark replaces bytes that are not UTF-8 with U+FFFD instead of failing.
        return v.contains("\ufffd"), v
    raise SourceError(f"{source.path}: column {name} is declared {sql_type}, which the Spark engine does not read yet.")


def _timestamp_format(fmt: str) -> tuple[str, str]:
    """A strftime format as (anchored regular expression, Spark pattern)."""
    grammar, pattern = "^", ""
    for part in re.split(r"(%[A-Za-z])", fmt):
        if part in DIRECTIVES:
            grammar += DIRECTIVES[part][0]
            pattern += DIRECTIVES[part][1]
        elif part.startswith("%"):
            raise SourceError(f"timestamp format {fmt!r}: {part} is not supported by the Spark engine.")
        elif part:
            grammar += re.escape(part)
            pattern += "".join(f"'{c}'" if c.isalpha() else c for c in part)
    return grammar + "$", pattern


def _enum_values(sql_type: str) -> list[str]:
    return re.findall(r"'((?:[^']|'')*)'", sql_type)


def _describe(source: SparkCsv, column: str, value: Any, bad_rows: int) -> str:
    if column.startswith(CONDITIONAL):
        index, _, key = column.removeprefix(CONDITIONAL).partition(":")
        c = source.conditional[int(index)]
        line, _ = _locate(source, c.column, value)
        more = f" ({bad_rows - 1} more bad line{'s' if bad_rows != 2 else ''})" if bad_rows > 1 else ""
        where = f"{source.path} line {line}" if line else str(source.path)
        said = _value_problem(c.type, c.format or source.timestamp_format, str(value))
        return f"{where}, column {c.column} ({c.when_column} {key}): {_short(str(value))!r} {said}{more}; fix or remove the row."
    line, field = _locate(source, column, value)
    more = f" ({bad_rows - 1} more bad line{'s' if bad_rows != 2 else ''})" if bad_rows > 1 else ""
    where = f"{source.path} line {line}" if line else str(source.path)
    if column == "fields":
        if field is not None:
            return (
                f"{where}, column {list(source.columns)[field]}: a quote is not closed{more}; close the quote or remove the row."
            )
        found = _field_count(value)
        return (
            f"{where}: {found} fields, expected {len(source.columns)} ({_short(value)!r}){more}; fix the row's commas or quoting."
        )
    if source.columns[column] == "VARCHAR":
        return f"{where}: bytes that are not UTF-8{more}; save the file as UTF-8 and rebuild."
    pattern = dict(source.patterns).get(column)
    if pattern is not None:
        said = Rule.text(pattern).problem(str(value)) or Rule.text(pattern).words()
    else:
        said = _value_problem(source.columns[column], source.timestamp_format, str(value))
    return f"{where}, column {column}: {_short(str(value))!r} {said}{more}; fix or remove the row."


def _value_problem(sql_type: str, timestamp_format: str | None, value: str) -> str:
    """What is wrong with `value`, in the DuckDB loader's words (funnel/project/values.py)."""
    rule = Rule.of(sql_type, timestamp_format)
    if rule is not None:
        return rule.problem(value) or rule.words()
    return f"is not {_type_words(sql_type, timestamp_format)}"


def _locate(source: SparkCsv, column: str, value: Any) -> tuple[int | None, int | None]:
    """(line of the first record with this problem, field of an unclosed quote) in a local file."""
    if not source.path.is_file():
        return None, None
    names = list(source.columns)
    with source.path.open(encoding="utf-8-sig", errors="replace", newline="") as f:
        lines = _Lines(f)
        reader = csv.reader(lines, strict=True)
        try:
            next(reader)  # the header
            while True:
                start = lines.number + 1
                record = next(reader)
                if column == "fields" and len(record) != len(names):
                    return start, None
                if column != "fields" and len(record) == len(names) and record[names.index(column)] == value:
                    return start, None
        except StopIteration:
            return None, None
        except csv.Error:
            return start, _unclosed_field(source.path, start)


class _Lines:
    """Lines of a file, counted, for csv.reader: where each record starts."""

    def __init__(self, f: Any) -> None:
        self.f, self.number = f, 0

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        line = self.f.readline()
        if not line:
            raise StopIteration
        self.number += 1
        return str(line)


def _unclosed_field(path: Path, start: int) -> int | None:
    """The field whose opening quote is never closed, in the record starting at line `start`."""
    with path.open(encoding="utf-8-sig", errors="replace", newline="") as f:
        for _ in range(start - 1):
            f.readline()
        rest = f.read()
    field, quoted, opened = 0, False, None
    for char in rest:
        if char == '"':
            quoted = not quoted
            opened = field if quoted else opened
        elif char == "," and not quoted:
            field += 1
        elif char in "\r\n" and not quoted:
            break
    return opened if quoted else None


def _field_count(record: str) -> int:
    try:
        return len(next(csv.reader([record.rstrip("\r\n")])))
    except (csv.Error, StopIteration):
        return record.count(",") + 1


def _type_words(sql_type: str, timestamp_format: str | None) -> str:
    if sql_type.upper().startswith("ENUM("):
        return "one of " + ", ".join(_enum_values(sql_type))
    words = TYPE_WORDS.get(sql_type.split("(")[0].upper(), sql_type)
    if sql_type.upper() == "TIMESTAMP":
        example = datetime(2024, 1, 31, 13, 45, 0, 120000).strftime(timestamp_format or TS)
        return words + f" like {example} (no time zone)"
    return words


def _short(text: str, limit: int = 60) -> str:
    text = text.rstrip("\r\n")
    return text if len(text) <= limit else text[: limit - 1] + "…"
