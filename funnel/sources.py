"""The six CSV files of a Pipedrive export: declared once, loaded strictly.

Every column and type is declared here and nowhere else; the loader and the sample
generator both read this table. Nothing is sniffed: a header that differs, a value that
does not fit its type, or a row with the wrong number of fields stops the build with the
file, line and column.
"""

from __future__ import annotations

import csv
import re
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from funnel.errors import SourceError, first_line
from funnel.quoting import quote_literal

if TYPE_CHECKING:
    import duckdb

SOURCE_NAME = "pipedrive"
REJECTS = "_funnel_rejects"  # DuckDB appends every bad row of every read_csv here

TS = "%Y-%m-%d %H:%M:%S"
TS_ISO = "%Y-%m-%dT%H:%M:%S"
TS_MICRO = "%Y-%m-%d %H:%M:%S.%f"


@dataclass(frozen=True)
class Source:
    """One CSV file of the export and the raw table it becomes."""

    table: str
    columns: dict[str, str]
    timestamp_format: str | None = None

    @property
    def file_name(self) -> str:
        return f"{self.table}.csv"


SOURCES: tuple[Source, ...] = (
    Source(
        "deal_changes",
        {
            "deal_id": "BIGINT",
            "change_time": "TIMESTAMP",
            "changed_field_key": "VARCHAR",
            "new_value": "VARCHAR",
        },
        timestamp_format=TS,
    ),
    Source(
        "activity",
        {
            "activity_id": "BIGINT",
            "type": "VARCHAR",
            "assigned_to_user": "BIGINT",
            "deal_id": "BIGINT",
            "done": "ENUM('True', 'False')",
            "due_to": "TIMESTAMP",
        },
        timestamp_format=TS_ISO,
    ),
    Source(
        "activity_types",
        {"id": "BIGINT", "name": "VARCHAR", "active": "ENUM('Yes', 'No')", "type": "VARCHAR"},
    ),
    Source(
        "fields",
        {"ID": "BIGINT", "FIELD_KEY": "VARCHAR", "NAME": "VARCHAR", "FIELD_VALUE_OPTIONS": "JSON"},
    ),
    Source("stages", {"stage_id": "BIGINT", "stage_name": "VARCHAR"}),
    Source(
        "users",
        {"id": "BIGINT", "name": "VARCHAR", "email": "VARCHAR", "modified": "TIMESTAMP"},
        timestamp_format=TS_MICRO,
    ),
)
SOURCES_BY_TABLE = {s.table: s for s in SOURCES}

TYPE_WORDS = {
    "BIGINT": "a whole number",
    "INTEGER": "a whole number",
    "TIMESTAMP": "a timestamp",
    "DECIMAL": "a decimal number",
    "JSON": "valid JSON",
}
CAST_VALUE = re.compile(r'Could not convert string "(.*)" to', re.DOTALL)


@dataclass(frozen=True)
class CsvLoad:
    """One CSV file to load into `target` with exactly `columns`."""

    path: Path
    target: str
    columns: dict[str, str]
    timestamp_format: str | None = None


def load_csvs(con: duckdb.DuckDBPyConnection, loads: list[CsvLoad], on_loaded: Any = None) -> list[int]:
    """Load every file into its table; return the row counts.

    Headers are checked first. DuckDB collects bad rows (`store_rejects`) instead of
    stopping at the first, so the first bad row of a file is reported as SourceError
    with its file, line and column, and how many more lines are bad.
    """
    import duckdb

    for load in loads:
        check_header(load.path, list(load.columns))
    counts = []
    for load in loads:
        started = time.perf_counter()
        try:
            row = con.execute(f"create or replace table {load.target} as select * from {_read_csv(load)}").fetchone()
        except duckdb.InvalidInputException as e:
            if "unicode" in str(e).lower():
                line = _first_non_utf8_line(load.path)
                raise SourceError(
                    f"{_where(load.path, line)}: bytes that are not UTF-8; save the file as UTF-8 and rebuild."
                ) from None
            raise SourceError(f"{load.path}: {first_line(e)}") from None
        bad = con.execute(
            f"select line, column_name, error_type, csv_line, error_message from {REJECTS} order by line, column_idx"
        ).fetchall()
        if bad:
            raise SourceError(_describe_reject(load, bad))
        counts.append(int(row[0]) if row else 0)
        if on_loaded:
            on_loaded(load, counts[-1], time.perf_counter() - started)
    return counts


def _read_csv(load: CsvLoad) -> str:
    columns = ", ".join(f"{quote_literal(c)}: {quote_literal(t)}" for c, t in load.columns.items())
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
        f"columns = {{{columns}}}",
    ]
    if load.timestamp_format:
        options.append(f"timestampformat = {quote_literal(load.timestamp_format)}")
    return f"read_csv({quote_literal(str(load.path))}, {', '.join(options)})"


def check_header(path: Path, expected: list[str]) -> None:
    """Compare the file's first line with the declared columns; say exactly what differs."""
    try:
        with path.open("rb") as f:
            first = f.readline(1 << 20)
    except FileNotFoundError:
        raise SourceError(
            f"{path}: file not found; export it from Pipedrive or point --raw-data at the folder that has it."
        ) from None
    except IsADirectoryError:
        raise SourceError(f"{path}: is a folder, expected a CSV file.") from None
    if not first.strip():
        raise SourceError(f"{path}: file is empty; expected a header line: {','.join(expected)}.")
    try:
        text = first.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise SourceError(f"{path} line 1: bytes that are not UTF-8; save the file as UTF-8 and rebuild.") from None
    try:
        found = next(csv.reader([text.rstrip("\r\n")]))
    except csv.Error as e:
        raise SourceError(f"{path} line 1: the header is not valid CSV ({e}); the header must be {','.join(expected)}.") from None
    if found == expected:
        return
    missing = [c for c in expected if c not in found]
    extra = [c for c in found if c not in expected]
    if missing and extra and len(missing) == len(extra) == 1:
        problem = f"column '{missing[0]}' is named '{extra[0]}'"
    elif missing:
        problem = f"missing column(s) {', '.join(missing)}"
    elif extra:
        problem = f"unexpected column(s) {', '.join(extra)}"
    else:
        problem = f"columns are in another order ({','.join(found)})"
    raise SourceError(f"{path} line 1: {problem}; the header must be exactly {','.join(expected)}.")


def _describe_reject(load: CsvLoad, rejects: list[tuple[Any, ...]]) -> str:
    path, columns = load.path, load.columns
    line, column, kind, csv_line, message = rejects[0]
    more_lines = len({r[0] for r in rejects}) - 1
    more = f" ({more_lines} more bad line{'s' if more_lines != 1 else ''})" if more_lines else ""
    where = _where(path, line)
    if kind == "CAST":
        match = CAST_VALUE.search(message)
        value = match.group(1) if match else "?"
        expected = _type_words(columns[column], load.timestamp_format)
        return f"{where}, column {column}: {_short(value)!r} is not {expected}{more}; fix or remove the row."
    if kind in ("MISSING COLUMNS", "TOO MANY COLUMNS"):
        found = csv_line.count(",") + 1
        return f"{where}: {found} fields, expected {len(columns)} ({_short(csv_line)!r}){more}; fix the row's commas or quoting."
    if kind == "INVALID ENCODING":
        return f"{where}: bytes that are not UTF-8{more}; save the file as UTF-8 and rebuild."
    if kind == "UNQUOTED VALUE":
        return f"{where}, column {column}: a quote is not closed{more}; close the quote or remove the row."
    if kind == "LINE SIZE OVER MAXIMUM":
        return f"{where}: the line is longer than DuckDB's 2 MB limit{more}; shorten the field."
    return f"{where}, column {column}: {first_line(message)}{more}."


def _type_words(sql_type: str, timestamp_format: str | None) -> str:
    if sql_type.startswith("ENUM("):
        return "one of " + sql_type[len("ENUM(") : -1].replace("'", "")
    words = TYPE_WORDS.get(sql_type.split("(")[0], sql_type)
    if sql_type == "TIMESTAMP":
        # The example is written in the file's own declared format.
        example = datetime(2024, 1, 31, 13, 45, 0, 120000).strftime(timestamp_format or TS)
        return words + f" like {example} (no time zone)"
    return words


def _where(path: Path, line: int | None) -> str:
    return f"{path} line {line}" if line else str(path)


def _first_non_utf8_line(path: Path) -> int | None:
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                return number
    return None


def _short(text: str, limit: int = 60) -> str:
    text = text.rstrip("\r\n")
    return text if len(text) <= limit else text[: limit - 1] + "…"
