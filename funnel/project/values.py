"""What a CSV value may look like for its declared type, checked twice the same way.

DuckDB's casts are forgiving: `'12.5'::bigint` is 13, `'0x1F'` is 31, `'infinity'` is a
timestamp in 9999 and `'24-06-26'` one in year 24. A forgiving cast is a wrong number, so
funnel reads such columns as text and accepts only one spelling per value:

- whole numbers: an optional leading `-` and ASCII digits, within the type's range;
- decimals: the same, with at most `scale` digits after one `.` (never rounded);
- timestamps and dates: exactly the declared format, every field zero-padded, a year from
  1970 to 2100, nothing around it;
- booleans: true or false (any of three letter cases);
- text with a declared pattern (a currency code): the whole value matches it.

Each rule exists as a SQL predicate (the fast path: one vectorized pass while loading) and
as a Python function (the error path: find the file's first bad line). tests/test_values.py
checks that both agree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from funnel.quoting import quote_literal

TS = "%Y-%m-%d %H:%M:%S"
DATE = "%Y-%m-%d"
FIRST_YEAR, LAST_YEAR = 1970, 2100

INTEGER_BITS = {"TINYINT": 8, "SMALLINT": 16, "INTEGER": 32, "INT": 32, "BIGINT": 64, "HUGEINT": 128}
DIGITS = re.compile(r"-?[0-9]+")
DECIMAL_TYPE = re.compile(r"DECIMAL\((\d+),\s*(\d+)\)")
BOOLEANS = ("true", "false", "True", "False", "TRUE", "FALSE")
EXAMPLE_TIME = datetime(2024, 1, 31, 13, 45, 0, 120000)
# Formats DuckDB's plain cast to TIMESTAMP reads, and those it also writes back as text.
LENIENT_CAST_READS = (TS, "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S.%f", DATE)
DUCKDB_RENDERS = (TS, "%Y-%m-%d %H:%M:%S.%f")


@dataclass(frozen=True)
class Rule:
    """The one accepted spelling of a declared type; `format` for timestamps and dates."""

    sql_type: str
    format: str | None = None

    @staticmethod
    def of(sql_type: str, timestamp_format: str | None = None) -> Rule | None:
        """The rule for a declared type, or None when DuckDB's own reading is already exact
        (VARCHAR, ENUM: exact match, JSON: kept verbatim)."""
        base = sql_type.split("(")[0].strip().upper()
        if base in INTEGER_BITS or base in ("DECIMAL", "BOOLEAN"):
            return Rule(sql_type.upper())
        if base == "TIMESTAMP":
            return Rule("TIMESTAMP", timestamp_format or TS)
        if base == "DATE":
            return Rule("DATE", DATE)
        return None

    @staticmethod
    def text(pattern: str) -> Rule:
        """The rule for a VARCHAR column whose every value matches `pattern` (whole value).

        The pattern is kept to what Python's `re` and DuckDB's RE2 read alike: letters,
        digits, classes, groups and counted repeats; no look-around or back-references.
        """
        if re.search(r"\\[1-9]|\(\?[=!<]", pattern):
            raise ValueError(f"pattern {pattern!r}: look-around and back-references are not allowed")
        try:
            re.compile(pattern)
        except re.error as e:
            raise ValueError(f"pattern {pattern!r} is not a regular expression ({e})") from None
        return Rule("VARCHAR", pattern)

    @property
    def kind(self) -> str:
        base = self.sql_type.split("(")[0]
        if base == "VARCHAR":
            return "text"
        return "integer" if base in INTEGER_BITS else base.lower()

    # --- SQL: the fast path -------------------------------------------------------------

    def sql_parse(self, value: str) -> str:
        """A SQL expression: the text `value` read as the declared type, leniently (NULL if
        it cannot be read at all). `sql_ok` then decides whether it was spelled exactly."""
        if self.kind == "text":
            return value
        if self.kind in ("timestamp", "date"):
            if self.format in LENIENT_CAST_READS:
                return f"try_cast({value} as TIMESTAMP)"  # cheaper than try_strptime, same result here
            return f"try_strptime({value}, {quote_literal(self.format or TS)})"
        return f"try_cast({value} as {self.sql_type})"

    def sql_ok(self, value: str, parsed: str) -> str:
        """A SQL predicate: the text `value` is the one accepted spelling of `parsed`.

        Each check starts with the comparison that is cheapest and true for nearly every
        good value; the slower alternative only runs for the rest.
        """
        if self.kind == "integer":
            return f"({parsed}::varchar = {value} or (regexp_full_match({value}, '-?[0-9]+') and {parsed} is not null))"
        if self.kind == "decimal":
            scale = self._precision_scale()[1]
            pattern = "-?[0-9]+" + (rf"(\.[0-9]{{1,{scale}}})?" if scale else "")
            return f"(regexp_full_match({value}, {quote_literal(pattern)}) and {parsed} is not null)"
        if self.kind == "boolean":
            return f"({value} in ({', '.join(quote_literal(b) for b in BOOLEANS)}))"
        if self.kind == "text":
            return f"regexp_full_match({value}, {quote_literal(self.format or '')})"
        fmt = self.format or TS
        exact = f"strftime({parsed}, {quote_literal(fmt)}) = {value}"
        if fmt in DUCKDB_RENDERS:  # DuckDB's own text for a timestamp: cheaper than strftime
            width = len(EXAMPLE_TIME.strftime(fmt))
            exact = f"(strlen({value}) = {width} and {parsed}::varchar = {value} or {exact})"
        in_range = f"{parsed} between timestamp '{FIRST_YEAR}-01-01' and timestamp '{LAST_YEAR}-12-31 23:59:59.999999'"
        return f"({in_range} and {exact})"

    def sql_ok_once(self, value: str) -> str:
        """Like `sql_ok`, with the parse written once: for checks that apply to a few rows.

        DuckDB computes an expression written twice once, before a CASE, for every row;
        written once it stays inside the CASE branch and runs only for the rows it is for.
        """
        parsed = self.sql_parse(value)
        if self.kind == "integer":
            # DuckDB's own text of the number first (cheap, and true for nearly every value);
            # a CASE keeps the two parses apart, so neither is hoisted out of the branch.
            return (
                f"(case when {parsed}::varchar = {value} then true "
                f"else regexp_full_match({value}, '-?[0-9]+') and {parsed} is not null end)"
            )
        if self.kind in ("timestamp", "date"):
            # Clamped to the years allowed, a value outside them no longer prints as itself.
            lowest, highest = f"timestamp '{FIRST_YEAR}-01-01'", f"timestamp '{LAST_YEAR}-12-31 23:59:59.999999'"
            clamped = f"greatest(least({parsed}, {highest}), {lowest})"
            return f"(strftime({clamped}, {quote_literal(self.format or TS)}) = {value})"
        return self.sql_ok(value, parsed)

    def sql_value(self, parsed: str) -> str:
        """The parsed value as the declared type."""
        if self.kind == "date":
            return f"({parsed})::DATE"
        return parsed

    # --- Python: the error path ---------------------------------------------------------

    def problem(self, text: str) -> str | None:
        """None when `text` is canonical, else what is wrong with it, in words."""
        if self.kind == "integer":
            if not DIGITS.fullmatch(text):
                return self.words()
            bits = INTEGER_BITS[self.sql_type]
            # The length first: int() refuses (ValueError) numbers of thousands of digits.
            if len(text) > 45 or not -(2 ** (bits - 1)) <= int(text) < 2 ** (bits - 1):
                return f"is out of range for {self.sql_type}"
            return None
        if self.kind == "decimal":
            precision, scale = self._precision_scale()
            pattern = r"-?[0-9]+" + (rf"(\.[0-9]{{1,{scale}}})?" if scale else "")
            if not re.fullmatch(pattern, text):
                return self.words()
            if abs(Decimal(text)) >= 10 ** (precision - scale):
                return f"is out of range for {self.sql_type}"
            return None
        if self.kind == "boolean":
            return None if text in BOOLEANS else self.words()
        if self.kind == "text":
            return None if re.fullmatch(self.format or "", text) else self.words()
        fmt = self.format or TS
        try:
            parsed = datetime.strptime(text, fmt)
        except ValueError:
            return self.words()
        if not FIRST_YEAR <= parsed.year <= LAST_YEAR:
            return f"is outside the years {FIRST_YEAR} to {LAST_YEAR}"
        return None if parsed.strftime(fmt) == text else self.words()

    def words(self) -> str:
        """What the value must look like, for an error message."""
        if self.kind == "integer":
            return "is not a whole number (digits only, optional leading -)"
        if self.kind == "decimal":
            scale = self._precision_scale()[1]
            return f"is not a decimal number (digits, optional leading -, at most {scale} after the point)"
        if self.kind == "boolean":
            return "is not true or false"
        if self.kind == "text":
            return f"does not match the declared pattern {self.format}"
        example = EXAMPLE_TIME.strftime(self.format or TS)
        what = "a date" if self.kind == "date" else "a timestamp"
        return f"is not {what} like {example} (every field zero-padded, no time zone)"

    def _precision_scale(self) -> tuple[int, int]:
        match = DECIMAL_TYPE.fullmatch(self.sql_type.replace(" ", ""))
        return (int(match.group(1)), int(match.group(2))) if match else (18, 3)
