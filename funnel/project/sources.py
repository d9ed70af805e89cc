"""The files of the export and how each is read: declared once, in sql/sources.toml.

Every column and type is declared here and nowhere else; the loader (funnel/engine/loading.py),
the Spark reader and the sample generator all read these declarations. The Pipedrive files
(six, and the optional deals.csv) are the default declaration.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from funnel.errors import SourceError
from funnel.project.config import IDENTIFIER
from funnel.project.values import Rule

if TYPE_CHECKING:
    pass

SOURCE_NAME = "pipedrive"

TS = "%Y-%m-%d %H:%M:%S"
TS_ISO = "%Y-%m-%dT%H:%M:%S"
TS_MICRO = "%Y-%m-%d %H:%M:%S.%f"
CURRENCY = "[A-Z]{3}"  # an ISO 4217 code as Pipedrive writes it: EUR, USD


@dataclass(frozen=True)
class Conditional:
    """A text column that must also fit `type` in the rows where `when_column` is one of
    `when_values`, e.g. deal_changes.new_value holds a stage id when changed_field_key is
    stage_id. The column stays text; only its spelling is checked."""

    column: str
    when_column: str
    when_values: tuple[str, ...]
    type: str
    format: str | None = None

    @property
    def rule(self) -> Rule:
        rule = Rule.of(self.type, self.format)
        if rule is None:
            raise SourceError(f"conditional rule on {self.column}: type {self.type} has no value rule")
        return rule


@dataclass(frozen=True)
class Source:
    """One CSV file of the export and the raw table it becomes."""

    table: str
    columns: dict[str, str]
    timestamp_format: str | None = None
    conditional: tuple[Conditional, ...] = ()
    source_name: str = SOURCE_NAME  # {{ source('<source_name>', '<table>') }}, and its raw schema
    # An optional file may be absent from an export: it is then an empty table of `columns`.
    optional: bool = False
    # VARCHAR columns whose every value must match a regular expression (whole value), e.g.
    # a currency code: (column, pattern) pairs.
    patterns: tuple[tuple[str, str], ...] = ()
    # The last columns, which a file may leave out (a header of the columns before them):
    # they are then NULL. stages.csv of the original export has stage_id and stage_name
    # only; `funnel pull` adds the stage's pipeline, order and probability.
    optional_columns: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        names = list(self.columns)
        if self.optional_columns and (
            list(self.optional_columns) != names[len(names) - len(self.optional_columns) :]
            or len(self.optional_columns) == len(names)
        ):
            raise SourceError(
                f"source {self.table}: optional_columns must be the last columns, in their order, after at least one "
                f"that every file has; got {list(self.optional_columns)}."
            )
        for column, pattern in self.patterns:
            if self.columns.get(column) != "VARCHAR":
                raise SourceError(f"source {self.table}: a pattern needs a declared VARCHAR column; got {column!r}.")
            try:
                Rule.text(pattern)  # fails now for a pattern that does not compile
            except ValueError as e:
                raise SourceError(f"source {self.table} column {column}: {e}.") from None
        for c in self.conditional:
            if self.columns.get(c.column) != "VARCHAR" or c.when_column not in self.columns:
                raise SourceError(
                    f"source {self.table}: a conditional rule needs a VARCHAR column and a declared "
                    f"when-column; got {c.column!r} when {c.when_column!r}."
                )
            if {c.column, c.when_column} & set(self.optional_columns):
                raise SourceError(f"source {self.table}: a conditional rule needs columns every file has, not optional ones.")
            c.rule  # noqa: B018 -- fails now for a type without a rule, not at load time

    @property
    def file_name(self) -> str:
        return f"{self.table}.csv"

    @property
    def required_columns(self) -> list[str]:
        """The columns every file has: the header without the optional last columns."""
        return list(self.columns)[: len(self.columns) - len(self.optional_columns)]


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
        conditional=(
            Conditional("new_value", "changed_field_key", ("stage_id", "user_id"), "BIGINT"),
            Conditional("new_value", "changed_field_key", ("add_time",), "TIMESTAMP", TS_ISO),
        ),
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
    Source(
        "stages",
        {
            "stage_id": "BIGINT",
            "stage_name": "VARCHAR",
            "pipeline_id": "BIGINT",
            "pipeline_name": "VARCHAR",
            "order_nr": "BIGINT",
            "deal_probability": "BIGINT",
        },
        optional_columns=("pipeline_id", "pipeline_name", "order_nr", "deal_probability"),
    ),
    Source(
        "users",
        {"id": "BIGINT", "name": "VARCHAR", "email": "VARCHAR", "modified": "TIMESTAMP"},
        timestamp_format=TS_MICRO,
    ),
    Source(
        "deals",
        {
            "deal_id": "BIGINT",
            "owner_id": "BIGINT",
            "pipeline_id": "BIGINT",
            "stage_id": "BIGINT",
            "status": "ENUM('open', 'won', 'lost')",
            "value": "DECIMAL(18,2)",
            "currency": "VARCHAR",
            "add_time": "TIMESTAMP",
            "won_time": "TIMESTAMP",
            "lost_time": "TIMESTAMP",
            "expected_close_date": "DATE",
            "probability": "BIGINT",
        },
        timestamp_format=TS,
        optional=True,
        patterns=(("currency", CURRENCY),),
    ),
)
SOURCES_BY_TABLE = {s.table: s for s in SOURCES}
DECLARATIONS = "sources.toml"  # in sql/: the project's own declaration of its export
SOURCE_KEYS = {"columns", "timestamp_format", "rules", "optional", "patterns", "optional_columns"}
RULE_KEYS = {"column", "when", "in", "type", "format"}
PLAIN_TYPES = ("VARCHAR", "JSON")


def declared(sql_dir: Path) -> tuple[Source, ...]:
    """The sources `sql/sources.toml` declares, or the Pipedrive files when it is absent.

        [pipedrive.deal_changes]                  # {{ source('pipedrive', 'deal_changes') }}
        timestamp_format = "%Y-%m-%d %H:%M:%S"     # how TIMESTAMP columns are spelled
        columns = { deal_id = "BIGINT", change_time = "TIMESTAMP", new_value = "VARCHAR" }
        rules = [{ column = "new_value", when = "changed_field_key", in = ["stage_id"], type = "BIGINT" }]
        optional = true                           # the file may be absent: an empty table
        patterns = { currency = "[A-Z]{3}" }      # a VARCHAR column's every value matches
        optional_columns = ["new_value"]          # last columns a file may leave out: NULL

    The file is deal_changes.csv in the export folder; its header must be exactly the
    columns, in that order. Unknown keys and types are errors naming the file and key.
    """
    import tomllib

    from funnel.errors import did_you_mean

    path = sql_dir / DECLARATIONS
    if not path.is_file():
        return SOURCES
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise SourceError(f"{path}: invalid TOML: {e}.") from None
    found: list[Source] = []
    for name, tables in data.items():
        if not IDENTIFIER.fullmatch(name) or not isinstance(tables, dict):
            raise SourceError(f"{path}: [{name}] must be a source name holding tables like [{name}.deals].")
        for table, spec in tables.items():
            where = f"{path}: [{name}.{table}]"
            if not IDENTIFIER.fullmatch(table) or not isinstance(spec, dict):
                raise SourceError(f"{where} must be a table named like a plain identifier.")
            for key in spec:
                if key not in SOURCE_KEYS:
                    raise SourceError(f"{where} unknown key '{key}'." + did_you_mean(key, sorted(SOURCE_KEYS)))
            columns = spec.get("columns")
            if not isinstance(columns, dict) or not columns:
                raise SourceError(f'{where} needs columns = {{ column = "TYPE", ... }} in the order of the file\'s header.')
            for column, sql_type in columns.items():
                if not isinstance(sql_type, str) or not _known_type(sql_type):
                    raise SourceError(
                        f"{where} column {column}: type {sql_type!r} is not one funnel reads strictly; use BIGINT, "
                        "INTEGER, DECIMAL(p,s), BOOLEAN, DATE, TIMESTAMP, VARCHAR, JSON or ENUM('a', 'b')."
                    )
            fmt = spec.get("timestamp_format")
            rules = tuple(_rule(where, r, columns) for r in spec.get("rules", []))
            optional = spec.get("optional", False)
            if not isinstance(optional, bool):
                raise SourceError(f"{where} optional must be true or false (true: the file may be absent, an empty table).")
            patterns = spec.get("patterns", {})
            if not isinstance(patterns, dict) or not all(isinstance(v, str) for v in patterns.values()):
                raise SourceError(f'{where} patterns must be {{ column = "regular expression" }}, e.g. currency = "[A-Z]{{3}}".')
            trailing = spec.get("optional_columns", [])
            if not isinstance(trailing, list) or not all(isinstance(c, str) for c in trailing):
                raise SourceError(f'{where} optional_columns must be a list of the last column names, e.g. ["order_nr"].')
            try:
                found.append(Source(table, dict(columns), fmt, rules, name, optional, tuple(patterns.items()), tuple(trailing)))
            except SourceError as e:
                raise SourceError(f"{where}: {e}") from None
    tables = [s.table.lower() for s in found]
    twice = [s.table for s in found if tables.count(s.table.lower()) > 1]
    if len(set(twice)) == 1:
        raise SourceError(f"{path}: table {twice[0]} is declared by two sources; each file is read once.")
    if twice:  # Users and users: one table in the database (names ignore case), one file on some disks
        first, second = sorted(set(twice))[:2]
        raise SourceError(f"{path}: tables {first} and {second} would be one table, as names ignore case; keep one.")
    if not found:
        raise SourceError(f"{path}: declares no source table; declare [pipedrive.deal_changes] and the others.")
    return tuple(found)


def _known_type(sql_type: str) -> bool:
    text = sql_type.strip()
    return text.upper() in PLAIN_TYPES or text.upper().startswith("ENUM(") or Rule.of(text) is not None


def _rule(where: str, entry: Any, columns: dict[str, str]) -> Conditional:
    from funnel.errors import did_you_mean

    if not isinstance(entry, dict) or not {"column", "when", "in", "type"} <= set(entry):
        raise SourceError(f'{where} rules: each is {{ column = "...", when = "...", in = ["..."], type = "BIGINT" }}.')
    for key in entry:
        if key not in RULE_KEYS:
            raise SourceError(f"{where} rules: unknown key '{key}'." + did_you_mean(key, sorted(RULE_KEYS)))
    return Conditional(entry["column"], entry["when"], tuple(entry["in"]), entry["type"], entry.get("format"))
