"""The build record: what a committed build says about itself, written and read here only.

Every engine's build ends with one row in `_funnel.build_info` of the env's database: one
JSON text made from a `BuildRecord`. The next plan reads it (what to reuse), and so do
`funnel status`, `docs`, `report`, `show` (the definitions in its title), the exports and
parity. A record from an older funnel, or one damaged by hand, reads as far as it makes
sense: a field of the wrong type is absent, never an exception.
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from funnel import workdir
from funnel.engine import database
from funnel.errors import FunnelError
from funnel.project import definitions

if TYPE_CHECKING:
    from funnel.project.config import Environment

SCHEMA = database.INFO_SCHEMA
TABLE = f"{SCHEMA}.build_info"
STATUSES = ("PASS", "WARN", "ERROR")


@dataclass(frozen=True)
class BuildRecord:
    env: str | None = None
    built_at: str | None = None  # ISO 8601, UTC, to the second
    raw_data: str | None = None  # the export folder
    select: str | None = None  # None: every model
    vars: dict[str, Any] = field(default_factory=dict)  # the definitions every model of the build was made with
    full: bool | None = None
    seconds: float | None = None
    source_rows: dict[str, int] = field(default_factory=dict)
    tests: dict[str, int] = field(default_factory=dict)  # PASS, WARN, ERROR -> how many
    funnel_version: str | None = None
    fingerprints: dict[str, dict[str, Any]] = field(default_factory=dict)  # source table -> plan.Fingerprint's fields
    models: dict[str, str] = field(default_factory=dict)  # model -> fingerprint
    test_results: dict[str, dict[str, Any]] = field(default_factory=dict)  # test -> fingerprint, failures, error
    engine: str = "duckdb"
    warehouse: str | None = None  # Spark: where the build's Parquet lies
    build: str | None = None  # Spark: the published build's id

    @property
    def input_rows(self) -> int | None:
        """The rows of every source the build holds; None when the record does not say."""
        return sum(self.source_rows.values()) if self.source_rows else None

    def non_default_vars(self) -> dict[str, Any]:
        """The definitions that differ from the defaults ({} for a build made with the defaults)."""
        return definitions.non_default(self.vars)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> BuildRecord | None:
        """The record in `text`; None when it is not a JSON object."""
        try:
            data = json.loads(text)
        except (ValueError, TypeError):
            return None
        if not isinstance(data, dict):
            return None
        return cls(
            env=str_or_none(data.get("env")),
            built_at=str_or_none(data.get("built_at")),
            raw_data=str_or_none(data.get("raw_data")),
            select=str_or_none(data.get("select")),
            vars=_dict(data.get("vars")),
            full=data.get("full") if isinstance(data.get("full"), bool) else None,
            seconds=float(data["seconds"]) if _number(data.get("seconds")) else None,
            source_rows={str(k): v for k, v in _dict(data.get("source_rows")).items() if int_or_none(v) is not None},
            tests={s: n for s in STATUSES if (n := int_or_none(_dict(data.get("tests")).get(s))) is not None},
            funnel_version=str_or_none(data.get("funnel_version")),
            fingerprints={str(k): v for k, v in _dict(data.get("fingerprints")).items() if isinstance(v, dict)},
            models={str(k): v for k, v in _dict(data.get("models")).items() if isinstance(v, str)},
            test_results={str(k): v for k, v in _dict(data.get("test_results")).items() if isinstance(v, dict)},
            engine=str_or_none(data.get("engine")) or "duckdb",
            warehouse=str_or_none(data.get("warehouse")),
            build=str_or_none(data.get("build")),
        )


def write(con: Any, record: BuildRecord) -> None:
    """Store `record` in the build open in `con` (replacing the one there)."""
    con.execute(f"create schema if not exists {SCHEMA}")
    con.execute(f"create or replace table {TABLE} as select ? as info", [record.to_json()])


def read(con: Any, catalog: str | None = None) -> BuildRecord | None:
    """The record of the build open in `con` (attached as `catalog`); None when it has none."""
    import duckdb

    try:
        row = con.execute(f"select info from {f'{catalog}.' if catalog else ''}{TABLE}").fetchone()
    except duckdb.CatalogException:
        return None
    return BuildRecord.from_json(row[0]) if row else None


def recorded_vars(con: Any, catalog: str | None = None) -> dict[str, Any]:
    """The non-default definitions the build open in `con` records, {} for none.

    A build from before the definitions records no vars: it was built with the defaults.
    """
    import duckdb

    try:
        record = read(con, catalog)
    except duckdb.Error:
        return {}
    return record.non_default_vars() if record else {}


def recorded(con: Any, catalog: str | None = None) -> str:
    """The non-default definitions the build open in `con` records, in words ('' for none)."""
    return definitions.describe(recorded_vars(con, catalog))


_cache: dict[tuple[object, ...], BuildRecord | None] = {}


def committed(env: Environment) -> BuildRecord | None:
    """The committed build's record, or None when there is no build, or one this version
    cannot read (the next build is then a full one).

    Read once per version of the file in a process: a build plans twice (before and under
    its lock), and opening a build costs some 10 ms.
    """
    try:
        stat = env.database.stat()
    except OSError:
        return None
    try:
        wal = workdir.wal_path(env.database).stat()
        wal_stat: tuple[int, int] | None = (wal.st_size, wal.st_mtime_ns)
    except OSError:
        wal_stat = None
    key = (str(env.database), stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, wal_stat)
    if key not in _cache:
        _cache.clear()  # one version at a time is all a process needs
        _cache[key] = _read_committed(env)
    return copy.deepcopy(_cache[key])


def _read_committed(env: Environment) -> BuildRecord | None:
    import duckdb

    try:  # a file gone since committed's stat is a BuildMissing: None too
        with database.read(env) as con:
            return read(con)
    except (FunnelError, duckdb.Error):
        return None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def int_or_none(value: Any) -> int | None:
    """`value` if it is an int (not a bool), else None: what a hand-edited record holds is checked."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None
