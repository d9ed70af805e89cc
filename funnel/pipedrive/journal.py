"""Resume for `funnel pull`: deal change logs kept beside the export as they come in."""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from funnel.pipedrive.rows import TRACKED_FIELDS
from funnel.project.sources import SOURCES_BY_TABLE

# Progress kept beside the export: `.<folder>.resume.jsonl`. Bump JOURNAL_FORMAT whenever what
# a deal's kept rows hold changes (columns, tracked fields, conversions): older journals are then
# discarded instead of mixing two layouts in one file.
JOURNAL_FORMAT = 1


def _journal_path(out: Path) -> Path:
    return out.parent / f".{out.name}.resume.jsonl"


def _header(api_url: str) -> dict[str, Any]:
    return {"format": JOURNAL_FORMAT, "api_url": api_url, "fields": list(TRACKED_FIELDS)}


def kept_logs(out: Path, api_url: str) -> dict[int, str]:
    """The deals whose change logs an earlier pull into `out` kept (id -> update_time then); the file is left as it is."""
    deals, _ = _read_journal(_journal_path(out), _header(api_url))
    return {deal: updated for deal, (updated, _rows) in deals.items()}


@dataclass
class Journal:
    """An append-only file of fetched deal change logs: a header line, then one line per deal.

    A deal's kept rows are reused while the deal's update_time in the listing is the one it
    had when its log was fetched. A line cut short by a kill is dropped (and cut off the file);
    a journal of another address or layout is discarded.
    """

    path: Path
    deals: dict[int, tuple[str, list[tuple[str, ...]]]]
    _file: Any = None
    _synced: float = 0.0

    @classmethod
    @contextlib.contextmanager
    def open(cls, path: Path, api_url: str) -> Iterator[Journal]:
        deals, good = _read_journal(path, _header(api_url))
        journal = cls(path, deals)
        if good == 0:
            with path.open("w", encoding="utf-8") as f:
                f.write(json.dumps(_header(api_url)) + "\n")
            good = path.stat().st_size
        journal._file = path.open("r+b")
        try:
            journal._file.truncate(good)  # a line cut short by a kill goes
            journal._file.seek(good)
            yield journal
        finally:
            journal._file.flush()
            os.fsync(journal._file.fileno())
            journal._file.close()

    def add(self, deal_id: int, updated: str, rows: list[tuple[str, ...]]) -> None:
        line = json.dumps({"deal": deal_id, "update_time": updated, "rows": rows}, ensure_ascii=False)
        self._file.write(line.encode("utf-8") + b"\n")
        self._file.flush()  # in the kernel: a SIGKILL loses nothing
        if time.monotonic() - self._synced > 5:
            os.fsync(self._file.fileno())  # on disk every few seconds: a power cut loses little
            self._synced = time.monotonic()


def _read_journal(path: Path, header: dict[str, Any]) -> tuple[dict[int, tuple[str, list[tuple[str, ...]]]], int]:
    """The kept deals and the length of the file's whole lines (0: start a new journal)."""
    deals: dict[int, tuple[str, list[tuple[str, ...]]]] = {}
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return deals, 0
    good = 0
    for number, line in enumerate(data.splitlines(keepends=True)):
        if not line.endswith(b"\n"):
            break  # cut short by a kill
        try:
            entry = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            break
        if number == 0:
            if entry != header:
                return {}, 0
        elif _journal_entry(entry):
            deals[entry["deal"]] = (entry["update_time"], [tuple(row) for row in entry["rows"]])
        good += len(line)
    return deals, good


def _journal_entry(entry: Any) -> bool:
    if not isinstance(entry, dict) or set(entry) != {"deal", "update_time", "rows"}:
        return False
    deal, updated, rows = entry["deal"], entry["update_time"], entry["rows"]
    if isinstance(deal, bool) or not isinstance(deal, int) or not isinstance(updated, str) or not updated:
        return False
    width = len(SOURCES_BY_TABLE["deal_changes"].columns)
    return isinstance(rows, list) and all(
        isinstance(row, list) and len(row) == width and all(isinstance(v, str) for v in row) and row[0] == str(deal)
        for row in rows
    )
