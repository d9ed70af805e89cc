"""All-or-nothing writing: a file or folder appears complete, or not at all.

Every writer of funnel (a build's database, an export's files, a report, a pulled export,
a new project, a cache) writes under a temporary name beside its target and renames it
over the target, one atomic step on POSIX. Durably: the new file is fsynced before the
rename and the folder after it, so a power cut leaves the old target or the new one.

    with atomic.writing(path) as temp:      # write `temp` however you like
        duck.execute(f"copy ... to '{temp}'")
    atomic.write_text(path, text)           # the common case
    atomic.replace(staging, target)         # a file or folder made elsewhere beside it
    with atomic.signals_deferred():         # several renames that belong together
        ...
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path


def temp_beside(path: Path, tag: str = "tmp") -> Path:
    """`.<name>.<pid>.<tag>` in `path`'s folder: on the same file system, so the rename is atomic,
    and named by its writer, so a dead writer's leftovers can be told from a live one's."""
    return path.with_name(f".{path.name}.{os.getpid()}.{tag}")


def fsync(path: Path) -> None:
    """Flush a file's (or a folder's entries') data to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace(temp: Path, target: Path, durable: bool = True) -> None:
    """Make `temp` (a file, or a folder whose target is absent or empty) `target` in one rename.

    Durable: the data before the rename, the folder's entry after it.
    """
    if durable and not temp.is_dir():
        fsync(temp)
    if temp.is_dir() and target.is_dir():
        target.rmdir()  # an empty folder only (OSError otherwise): the caller checked
    os.replace(temp, target)
    if durable:
        fsync(target.parent)


@contextlib.contextmanager
def writing(path: Path, tag: str = "tmp", durable: bool = True) -> Iterator[Path]:
    """A temporary path beside `path` to write; renamed over `path` when the block ends
    without an error, removed whatever happens."""
    temp = temp_beside(path, tag)
    try:
        yield temp
        replace(temp, path, durable)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()


def write_text(path: Path, text: str, durable: bool = True) -> Path:
    """Write `text` (UTF-8) to `path` all-or-nothing; OSError when it cannot."""
    with writing(path, durable=durable) as temp:
        with open(temp, "w", encoding="utf-8") as f:
            f.write(text)
    return path


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back for the block (they are delivered right after it): the
    renames inside happen together, and whatever the caller then says about them is true.

    Outside the main thread (signals go to the main thread anyway) this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def alive(pid: int) -> bool:
    """Whether process `pid` runs (its temporary files are in use) or is gone (they are litter)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
