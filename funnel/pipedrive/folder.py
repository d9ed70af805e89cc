"""The export folder of `funnel pull`: --since, merging into the previous export, publishing.

The files are written into a temporary folder beside the export and renamed into place only
when every resource was fetched: an interrupted pull leaves the previous export as it was.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from funnel import atomic
from funnel.pipedrive.client import PullError
from funnel.project.sources import SOURCES_BY_TABLE

STATE_FILE = ".funnel-pull.json"
# `--since last` starts this long before the last pull: clocks differ, merging is idempotent.
SINCE_OVERLAP = timedelta(hours=1)
SINCE = re.compile(r"\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2})?)?(Z|[+-]\d{2}:?\d{2})?")


@dataclass
class Table:
    rows: list[tuple[str, ...]]
    refreshed: set[str] = field(default_factory=set)  # --since: keys whose old rows these replace
    key: int = 0  # column of that key
    current: set[str] | None = None  # the keys that still exist: older rows of other keys are dropped
    columns: tuple[str, ...] | None = None  # what the rows hold, when more than the file declares


def parse_since(text: str) -> str:
    """'last' or a timestamp (UTC unless it names a zone); raises PullError otherwise."""
    if text == "last" or SINCE.fullmatch(text.strip()):
        return text.strip()
    raise PullError(f"'{text}' is not 'last' or a timestamp like 2024-06-01 or 2024-06-01T08:00:00Z.")


def _since(since: str | None, out: Path, api_url: str) -> datetime | None:
    if since is None:
        return None
    missing = [s.file_name for s in SOURCES_BY_TABLE.values() if not s.optional and not (out / s.file_name).is_file()]
    if missing:
        raise PullError(
            f"{out}: no previous export to merge into ({', '.join(missing)} missing); run funnel pull without --since first."
        )
    state_path = out / STATE_FILE
    state: dict[str, Any] = {}
    if state_path.is_file():
        try:
            state = json.loads(state_path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            raise PullError(f"{state_path}: not valid JSON; run funnel pull without --since to start afresh.") from None
    if state.get("api_url") not in (None, api_url):
        raise PullError(
            f"{out} was pulled from {state.get('api_url')}, not {api_url}; pull into another folder or without --since."
        )
    if since == "last":
        if "pulled_at" not in state:
            raise PullError(f"{state_path}: no previous pull recorded; run funnel pull without --since first.")
        return _parse_since_time(str(state["pulled_at"]), state_path.name) - SINCE_OVERLAP
    return _parse_since_time(parse_since(since), "--since")


def _parse_since_time(text: str, where: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise PullError(f"{where}: '{text}' is not a timestamp like 2024-06-01T08:00:00Z.") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _merge(out: Path, fresh: dict[str, Table]) -> dict[str, Table]:
    """The previous export's deal change logs with the fresh ones in; every other table is fresh.

    Refreshed deals replace their old rows; the old rows of a deal that is no longer in the
    account (`current`) are dropped. Activities are listed whole by every pull, so activity.csv
    is the fresh list as it is (activities deleted since are not in it).
    """
    merged = dict(fresh)
    table = fresh["deal_changes"]
    kept = [
        row
        for row in _read(out, "deal_changes")
        if (table.current is None or row[table.key] in table.current) and row[table.key] not in table.refreshed
    ]
    merged["deal_changes"] = Table(kept + table.rows, current=table.current)
    return merged


def _dropped(out: Path, name: str, current: set[str] | None) -> int:
    """Keys (first column: deal or activity ids) of the previous export's file for `name` that are not in `current`."""
    path = out / SOURCES_BY_TABLE[name].file_name
    if current is None or not path.is_file():
        return 0
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f)
        next(reader, None)
        return len({row[0] for row in reader if row and row[0] not in current})


def _read(out: Path, name: str) -> list[tuple[str, ...]]:
    source = SOURCES_BY_TABLE[name]
    path = out / source.file_name
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f)
        if next(reader, None) != list(source.columns):
            raise PullError(f"{path} line 1: not the declared header; run funnel pull without --since to start afresh.")
        rows = [tuple(row) for row in reader]
    for number, row in enumerate(rows, start=2):
        if len(row) != len(source.columns):
            raise PullError(f"{path} line {number}: {len(row)} fields, expected {len(source.columns)}; pull without --since.")
    return rows


# --- writing: a scratch folder beside the export, renamed into place at the end --------


@contextlib.contextmanager
def _scratch(out: Path) -> Iterator[Path]:
    """A fresh temporary folder beside `out`, removed unless published; dead pulls' folders go first."""
    if out.exists() and not out.is_dir():
        raise PullError(f"{out}: is a file, expected the export folder.")
    out.parent.mkdir(parents=True, exist_ok=True)
    for stale in out.parent.glob(f".{out.name}.pull-*"):
        pid = stale.name.rsplit("-", 1)[-1]
        if pid.isdigit() and atomic.alive(int(pid)) and int(pid) != os.getpid():
            raise PullError(f"another funnel pull into {out} is running (pid {pid}); wait for it to finish.")
        shutil.rmtree(stale, ignore_errors=True)
    scratch = out.parent / f".{out.name}.pull-{os.getpid()}"
    scratch.mkdir()
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _publish(scratch: Path, out: Path, tables: dict[str, Table], state: dict[str, Any]) -> None:
    names = []
    for name, table in tables.items():
        source = SOURCES_BY_TABLE[name]
        with (scratch / source.file_name).open("w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(source.columns)
            rows = sorted(_projected(table, tuple(source.columns), source.file_name), key=_row_order)
            writer.writerows(rows)
        names.append(source.file_name)
    state["rows"] = {name: len(table.rows) for name, table in tables.items()}
    (scratch / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
    out.mkdir(exist_ok=True)
    # Eight renames (seven files and the state) take milliseconds; Ctrl-C or SIGTERM waits until they are all done.
    with atomic.signals_deferred():
        for name in [*names, STATE_FILE]:
            atomic.replace(scratch / name, out / name)


def _projected(table: Table, columns: tuple[str, ...], file_name: str) -> list[tuple[str, ...]]:
    """The table's rows in the declared columns (a table that holds more, like stages, gives those declared)."""
    if table.columns is None or table.columns == columns:
        return table.rows
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise PullError(
            f"sql/sources.toml declares {', '.join(missing)} for {file_name}, which funnel pull cannot fill; "
            f"it writes {', '.join(table.columns)}."
        )
    at = [table.columns.index(c) for c in columns]
    return [tuple(row[i] for i in at) for row in table.rows]


def _row_order(row: tuple[str, ...]) -> tuple[tuple[int, int, str], ...]:
    """Numeric ids in numeric order, then the remaining columns as text: the same file every time."""
    return tuple((0, int(v), "") if v.isdigit() else (1, 0, v) for v in row)


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
