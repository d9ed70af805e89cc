"""One error hierarchy for every expected failure.

The CLI catches `FunnelError` in one place and prints `Error: <message>`; anything else
reaching the user is a bug. Messages are one line and say what to do next.
"""

from typing import Any


class FunnelError(Exception):
    """An expected failure a user can fix: bad config, bad data, a missing build."""


class ConfigError(FunnelError):
    """environments.toml, a command-line value or the project layout is wrong."""


class SourceError(FunnelError):
    """A raw CSV file is missing or does not match its declared columns and types."""


class ModelError(FunnelError):
    """A model file cannot be rendered, ordered or run."""


class TestFailure(FunnelError):
    """A data test of severity `error` found rows; `rows` holds the first of them per test."""

    __test__ = False  # not a pytest test class

    def __init__(self, message: str, rows: list[Any] | None = None) -> None:
        super().__init__(message)
        self.rows = rows or []


class BuildMissing(FunnelError):
    """An environment has no committed build yet."""


class BuildBusy(FunnelError):
    """Another process is building the same environment."""


class ExportError(FunnelError):
    """PostgreSQL or file export failed; the previous tables are unchanged."""


def from_os_error(error: OSError) -> FunnelError:
    """A file the system refused (a path that is a file, not a folder; no permission; a full
    disk) as the one-line FunnelError the CLI prints and the Python API raises."""
    where = f"{error.filename}: " if error.filename else ""
    return FunnelError(f"{where}{error.strerror or error}; check the path and its permissions.")


def first_line(error: BaseException | str) -> str:
    """The first line of a driver's message, without its final dot, for quoting in ours."""
    text = str(error).strip()
    if not text:
        return type(error).__name__ if isinstance(error, BaseException) else "no message"
    return text.splitlines()[0].strip().rstrip(".")


def shorten(text: str, limit: int = 80) -> str:
    """`text` cut to `limit` characters with an ellipsis: user values quoted in messages
    (a 100 kB option, a 200k-column header) never flood the one error line."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def did_you_mean(word: str, choices: list[str] | tuple[str, ...]) -> str:
    """Return ' Did you mean 'x'?' for the closest choice, or a list of the valid ones."""
    import difflib

    # Case is compared last: 'REP_X' is nearest to rep_x, as database names ignore it.
    same_case = [c for c in choices if c.lower() == word.lower()]
    close = same_case or difflib.get_close_matches(word[:200], choices, n=1)
    if close:
        return f" Did you mean '{close[0]}'?"
    listed = ", ".join(sorted(choices)[:20]) + (", …" if len(choices) > 20 else "")
    return f" Valid: {listed}." if choices else ""


def n_rows(count: int) -> str:
    """`1 row`, `2 rows`, `1,500 rows`."""
    return f"{count:,} row" + ("" if count == 1 else "s")
