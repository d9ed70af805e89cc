"""A CSV file's shape, checked before its values: a regular file, UTF-8, one kind of line
end, the declared header. Each problem is a SourceError naming the file, the line and what
to do; the values themselves are checked by funnel/engine/loading.py (DuckDB) and
funnel/engine/spark/sources.py (Spark), which share these checks and words.
"""

from __future__ import annotations

import csv
import os
import stat
from pathlib import Path

from funnel.errors import SourceError

HEADER_LIMIT = 1 << 20  # bytes of the first line that are read


def check_header(path: Path, expected: list[str], optional: tuple[str, ...] = ()) -> list[str]:
    """Compare the file's first line with the declared columns; say exactly what differs.
    Return the columns the file has: `expected`, or it without some of the `optional` last ones.

    Only a regular file (or a link to one) is read: a named pipe or a device would block
    the build while it holds the build lock.
    """
    first = _first_line_of_regular_file(path)
    if not first.strip():
        raise SourceError(f"{path}: file is empty; expected a header line: {','.join(expected)}.")
    if len(first) == HEADER_LIMIT and not first.endswith(b"\n"):
        raise SourceError(f"{path} line 1: the header is longer than 1 MB; the header must be exactly {','.join(expected)}.")
    try:
        text = first.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise SourceError(f"{path} line 1: bytes that are not UTF-8; save the file as UTF-8 and rebuild.") from None
    try:
        found = next(csv.reader([text.rstrip("\r\n")]))
    except csv.Error as e:
        raise SourceError(f"{path} line 1: the header is not valid CSV ({e}); the header must be {','.join(expected)}.") from None
    required = len(expected) - len(optional)
    if found == expected or (required <= len(found) < len(expected) and found == expected[: len(found)]):
        return found
    if optional:  # name the short header too: the file may leave out the optional columns
        expected_text = f"{','.join(expected[:required])} or {','.join(expected)}"
        if len(optional) > 1:
            expected_text += " (or leave out only the last ones)"
    else:
        expected_text = ",".join(expected)
    compared = expected[: len(found)] if required <= len(found) < len(expected) else expected  # the optional ones it has
    missing = [c for c in compared if c not in found]
    extra = [c for c in found if c not in compared]
    if missing and extra and len(missing) == len(extra) == 1:
        problem = f"column {quote(missing[0])} is named {quote(extra[0])}"
    elif missing:
        problem = f"missing column(s) {_short_list(missing)}"
    elif extra:
        problem = f"unexpected column(s) {_short_list(extra)}"
    else:
        problem = f"columns are in another order ({short(','.join(found), 200)})"
    raise SourceError(f"{path} line 1: {problem}; the header must be exactly {expected_text}.")


def _first_line_of_regular_file(path: Path) -> bytes:
    try:
        # O_NONBLOCK: opening a named pipe with no writer must not wait; fstat then refuses it.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise SourceError(
            f"{path}: file not found; export it from Pipedrive or point --raw-data at the folder that has it."
        ) from None
    except PermissionError:
        raise SourceError(f"{path}: permission denied; make the file readable and rebuild.") from None
    with open(fd, "rb", closefd=True) as f:
        require_regular_file(path, os.fstat(fd).st_mode)
        return f.readline(HEADER_LIMIT)


def require_regular_file(path: Path, mode: int) -> None:
    """SourceError unless `mode` (of `path`) is a regular file: a pipe or device never ends."""
    if stat.S_ISDIR(mode):
        raise SourceError(f"{path}: is a folder, expected a CSV file.")
    if not stat.S_ISREG(mode):
        raise SourceError(f"{path}: is {_file_kind(mode)}, not a regular file; save the export as a plain CSV file.")


def _file_kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a file"


def mixed_line_ends(path: Path) -> SourceError | None:
    """The error for a file whose lines end in both CRLF and LF, naming the first odd line."""
    mixed = _mixed_line_end(path)
    if not mixed:
        return None
    line, found, first = mixed
    return SourceError(
        f"{path} line {line}: the line ends with {found} but line 1 with {first}; "
        "save the file with one kind of line end (all CRLF or all LF) and rebuild."
    )


def _mixed_line_end(path: Path) -> tuple[int, str, str] | None:
    """The first line whose end (CRLF or LF) differs from line 1's, outside quotes."""
    first = None
    in_quotes = False
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            in_quotes ^= raw.count(b'"') % 2 == 1
            if in_quotes or not raw.endswith(b"\n"):
                continue
            kind = "CRLF (\\r\\n)" if raw.endswith(b"\r\n") else "LF (\\n)"
            if first is None:
                first = kind
            elif kind != first:
                return number, kind, first
    return None


def first_non_utf8_line(path: Path) -> int | None:
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                return number
    return None


def where(path: Path, line: int | None) -> str:
    return f"{path} line {line}" if line else str(path)


def short(text: str, limit: int = 60) -> str:
    text = text.rstrip("\r\n")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def quote(text: str, limit: int = 60) -> str:
    """A value from the file, shortened and quoted so that it stays on one line."""
    return repr(short(text, limit))


def _short_list(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(short(n, 40) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")
