"""How the CLI shows things: progress and diagnostics on stderr, data on stdout.

Only the CLI imports this module; the core never touches rich. On a terminal, progress is
rendered by rich (colour); into a pipe or a log (cron, CI) it is the same text, plain,
and rich is not even imported: a scheduled build starts faster.
"""

from __future__ import annotations

import contextlib
import functools
import re
import sys
from collections.abc import Callable, Iterator
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from funnel.errors import n_rows

if TYPE_CHECKING:
    from pathlib import Path

    from rich.console import Console

    from funnel.build.plan import Plan
    from funnel.build.runner import BuildResult, Step
    from funnel.outputs.files import Exported
    from funnel.outputs.html_docs import Coverage
    from funnel.outputs.parity import TableParity
    from funnel.outputs.status import Status as StatusValue
    from funnel.project.checks import TestResult
    from funnel.workdir import Removed

STATUS_STYLE = {"PASS": "green", "WARN": "yellow", "ERROR": "bold red"}
BARS_FROM_WIDTH = 100  # narrower terminals get the table without bars rather than wrapped names
MAX_ERROR = 1000  # characters of one Error: line
MARKUP = re.compile(r"\[(?:/|green|yellow|bold|bold red)\]")
PLAN_STEP = re.compile(r"  (\w+) +(source|model|test) +(\S+) +(.*)")  # a detail line of plan.describe


@functools.cache
def _rich_stderr() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def info(markup: str, text: str = "") -> None:
    """A progress or summary line on stderr: `markup` (which may use the tags in MARKUP),
    then `text` (a value from the export, a server or a path) shown as it is.

    Nothing in the line reaches the terminal as a control character (printable); `text`
    is never read as rich markup either, so `[link=...]` in an owner name stays brackets.
    Progress nobody can read any more (`funnel build 2>&1 | head -1`) is dropped: it must
    never change what the command does.
    """
    markup, text = _lines(markup), _lines(text)
    try:
        if sys.stderr.isatty():
            from rich.text import Text

            line = Text.from_markup(markup, emoji=False) + Text(text)
            _rich_stderr().print(line, soft_wrap=True)
        else:
            print(MARKUP.sub("", markup) + text, file=sys.stderr, flush=True)
    except (BrokenPipeError, ValueError):  # ValueError: stderr was closed
        _silence(sys.stderr)


def _lines(text: str) -> str:
    """`text` with every control character shown escaped (printable), line breaks kept."""
    return "\n".join(printable(line) for line in text.split("\n"))


def _silence(stream: Any) -> None:
    """Point a stream whose reader has gone at /dev/null, so later writes and flushes succeed."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def error(message: str) -> None:
    """The one line every expected failure prints (plain, never wrapped).

    Messages quote user data (headers, values, paths); anything unprintable in it, a
    newline or a control byte, is shown escaped so that the error stays one line, and a
    runaway message is cut rather than flooding the terminal.
    """
    from funnel.errors import shorten

    try:
        print(f"Error: {shorten(printable(message), MAX_ERROR)}", file=sys.stderr, flush=True)
    except (BrokenPipeError, ValueError):
        _silence(sys.stderr)


def printable(text: str) -> str:
    """`text` for a terminal: every character that is not printable (a control character
    such as ESC, BEL, a C1 CSI, a newline; a format character such as U+202E) written as
    its Python escape (`\\x1b`), so no escape sequence from the data reaches the terminal."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def rich_text(value: str) -> Any:
    """A cell or title for a rich table: printable, and plain text (rich markup and
    :emoji: codes in the data stay as typed)."""
    from rich.text import Text

    return Text(printable(value))


WIDTH = 80  # progress lines fit an 80-column terminal
NAME_WIDTH = 32


def step_line(step: Step) -> None:
    rows = _rows_column(step.rows) if step.rows is not None else " " * 16
    info(f"  [green]OK[/]    {step.kind:<6} {step.name:<{NAME_WIDTH}} {rows} {step.seconds:6.2f}s")


def test_line(result: TestResult) -> None:
    """A test that did not pass: status, name and count, then what it means, indented."""
    if result.status == "PASS":
        return
    style = STATUS_STYLE[result.status]
    detail = result.error or n_rows(result.failures) + (" (as recorded; nothing it reads changed)" if result.reused else "")
    info(f"  [{style}]{result.status:<5}[/] test   ", f"{result.test.name}: {detail}")
    if result.test.description and not result.error:
        for line in _wrapped(result.test.description, indent=15):
            info(line)


def _wrapped(text: str, indent: int, first: int | None = None) -> list[str]:
    """`text` in lines of at most WIDTH, indented by `indent` (the first line by `first`)."""
    import textwrap

    if len(text) + (indent if first is None else first) <= WIDTH:
        return [" " * (indent if first is None else first) + text]
    return textwrap.wrap(
        text,
        WIDTH,
        initial_indent=" " * (indent if first is None else first),
        subsequent_indent=" " * indent,
        break_long_words=False,
        break_on_hyphens=False,
    )


def failing_rows(found: list[Any]) -> None:
    """The first rows that break each failing test (FailingRows, or their dicts from disk), on stderr."""
    for item in found:
        fields: dict[str, Any] = item if isinstance(item, dict) else vars(item)
        rows = fields["rows"]
        info(f"  {fields['status']}  ", f"{fields['test']}: {n_rows(fields['failures'])}, the first {len(rows)}:")
        info("    ", " | ".join(fields["columns"]))
        for row in rows:
            info("    ", " | ".join(printable(v)[:40] for v in row))


def test_summary(results: list[TestResult]) -> str:
    counts = {s: sum(1 for r in results if r.status == s) for s in ("PASS", "WARN", "ERROR")}
    return " ".join(f"[{STATUS_STYLE[s]}]{s}={n}[/]" for s, n in counts.items())


def plan_lines(plan: Plan, detail: bool = False) -> None:
    """The plan, before anything runs: what loads, runs and is tested, and why."""
    from funnel.build.plan import describe

    lines = describe(plan, detail)
    # Fitted to 80 columns on a terminal; a log keeps plan.describe's lines whole, one a fact.
    for line in _plan_text(lines) if _stderr_is_terminal() else lines:
        info(line)


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except ValueError:
        return False


def stdout_is_terminal() -> bool:
    try:
        return sys.stdout.isatty()
    except ValueError:
        return False


def _plan_text(lines: list[str], indent: int = 0) -> list[str]:
    """The lines of plan.describe fitted to WIDTH: the name column as wide as the longest
    name shown (not a fixed 40), long lines wrapped under their start."""
    steps = [PLAN_STEP.fullmatch(line) for line in lines]
    width = min(NAME_WIDTH, max([len(m[3]) for m in steps if m] + [0]))
    out: list[str] = []
    for line, step in zip(lines, steps, strict=True):
        if step:
            line = f"  {step[1]:<5} {step[2]:<6} {step[3]:<{width}}  {step[4]}"
        out += _wrapped(line, indent=indent + 8, first=indent)
    return out


def build_summary(result: BuildResult) -> None:
    env = result.manifest.env.name
    if result.plan.up_to_date:
        info(f"Up to date: env {env}, tests {test_summary(result.tests)} (as recorded) in {result.seconds:.2f}s")
        return
    plan = result.plan
    sources, models = len(plan.names("source", "load")), len(plan.names("model", "run"))
    if plan.full:
        done = f"{sources} sources ({n_rows(result.source_rows)}), {models} models"
    else:
        all_sources, all_models = sources + len(plan.names("source", "reuse")), models + len(plan.names("model", "reuse"))
        done = f"loaded {sources} of {all_sources} sources ({n_rows(result.source_rows)}), ran {models} of {all_models} models"
    info(f"Done: env {env} in {result.seconds:.2f}s: {done}")
    info(f"      tests {test_summary(result.tests)}")


@contextlib.contextmanager
def progress_bar(description: str) -> Iterator[Callable[[str, int, int], None] | None]:
    """A rich progress bar on a terminal, fed `(label, done, total)`; nothing in a pipe."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeRemainingColumn(),
        console=_rich_stderr(),
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=None)

        def update(label: str, done: int, total: int) -> None:
            bar.update(task, completed=done, total=total, description=f"{description} {label}")

        yield update


def export_line(item: Exported) -> None:
    info(f"  [green]OK[/]    table  {item.table:<{NAME_WIDTH}} {_rows_column(item.rows)} {item.seconds:6.2f}s")


def parity_report(results: list[TableParity]) -> None:
    """One line per table on stdout, then the first differing rows."""
    for r in results:
        if not r.exists:
            print(f"{r.table}: MISSING in PostgreSQL ({r.missing:,} rows in DuckDB); run funnel export first")
            continue
        status = "OK" if r.ok else "DIFFERENT"
        print(f"{r.table}: {status} matching={r.matching:,} missing={r.missing:,} unexpected={r.unexpected:,}")
        for kind, row in r.examples:
            print(f"  {kind:<10} " + ", ".join(printable(_compared(v)) for v in row))


def _compared(value: Any) -> str:
    """A value of a row parity found different: NULL and '' are what may differ, so both show."""
    if value is None:
        return "NULL"
    return "''" if value == "" else plain(value)


def plain(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, tuple):
        return ", ".join(plain(v) for v in value)
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def print_status(status: StatusValue) -> None:
    """`funnel status` as a person reads it: one fact per line, on stdout."""
    from pathlib import Path

    from funnel import names
    from funnel.project import definitions

    def here(path: str) -> str:
        """A path inside the project, relative to it; any other as it is."""
        try:
            return str(Path(path).relative_to(status.project))
        except ValueError:
            return path

    lines = [
        f"funnel {status.funnel_version} · env {status.env} (of {', '.join(status.environments)})",
        f"project      {status.project}",
        f"config       {here(status.config_path)}",
    ]
    if status.raw_data is None:
        lines.append("export       none named; set raw_data or pass --raw-data")
    else:
        lines.append(f"export       {here(status.raw_data)}" + (" (the last build's)" if status.raw_data_from_build else ""))
    size = _bytes(status.database_bytes) if status.database_bytes is not None else "does not exist"
    lines.append(f"database     {here(status.database)} ({size})")
    build = status.build
    if build is None:
        lines.append(f"last build   {status.build_problem}")
    else:
        kind = "full" if build.full else "incremental"
        selection = f"--select {build.select}" if build.select else "all models"
        seconds = f"{build.seconds:.2f}s" if build.seconds is not None else "? s"
        built_at = (build.built_at or "?").replace("T", " ").replace("+00:00", " UTC")
        lines.append(f"last build   {built_at} · funnel {build.funnel_version} · {kind} · {selection} · {seconds}")
        lines.append(f"built from   {here(build.raw_data) if build.raw_data else '?'}")
        for source in build.sources:
            rows = n_rows(source.rows) if source.rows is not None else "? rows"
            if source.absent:
                lines.append(f"  {Path(source.path).name:<22} {'absent':>16}  optional: an empty table")
                continue
            # In full, as sha256sum prints it, so the file can be checked against it.
            lines.append(f"  {Path(source.path).name:<22} {rows:>16}  sha256 {source.sha256 or '?'}")
        months = f"{build.first_month} to {build.last_month}" if build.first_month else "no rows"
        lines.append(f"report       {months}")
        lines.append("tests        " + " ".join(f"{name}={count}" for name, count in build.tests.items()))
        lines.append(f"definitions  {definitions.describe(build.definitions) or 'the defaults'}")
        if build.pipeline is not None:
            counting = ", ".join(names.ONE_PIPELINE)
            lines.append(f"pipeline     {build.pipeline}: counted alone by {counting}")
    if status.up_to_date is None:
        lines.append(f"up to date   unknown: {status.plan_problem}")
    elif status.up_to_date:
        lines.append("up to date   yes: same export, same SQL, same tests")
    else:
        lines.append("up to date   no; funnel build would do this:")
        lines += _plan_text(status.plan, indent=2)
    postgres = status.postgres
    if status.postgres_target:
        postgres += f" ({status.postgres_target})"
    if status.postgres_problem:
        postgres += f": {status.postgres_problem}"
    lines.append(f"postgres     {postgres}")
    lines = [printable(line) for line in lines]  # paths, names and server messages: no control character reaches the terminal
    fitted = [part for line in lines for part in (_wrapped(line, indent=13, first=0) if not line.startswith(" ") else [line])]
    sys.stdout.write("\n".join(fitted) + "\n")


def clean_report(removed: list[Removed], root: Path) -> None:
    """What `funnel clean` removed, one path a line, and the bytes freed."""
    for item in removed:
        shown = _relative(item.path, root)
        if item.kept:
            info(f"  kept     {shown}: {item.kept}")
        else:
            info(f"  removed  {shown} ({_bytes(item.bytes)})")
    freed = sum(item.bytes for item in removed if not item.kept)
    count = sum(1 for item in removed if not item.kept)
    info(f"Removed {count} file(s) and folder(s), {_bytes(freed)} freed" if count else "Nothing to clean")


def docs_coverage(found: Coverage, root: Path) -> None:
    """What `funnel docs` found undescribed, and where each description goes."""
    if found.complete:
        info("Every model and every reporting column is described.")
        return
    count = sum(len(c) for c in found.columns.values())
    info(f"Not described: {len(found.models)} model(s), {count} reporting column(s)")
    for model in found.models:
        where = "# lines above its table in seeds.toml" if model.is_seed else "a -- comment block opening the file"
        info(f"  model    {model.name}: {where} ({_relative(model.path, root)})")
    for name, columns in found.columns.items():
        info(f"  columns  {name}: {', '.join(columns)} (columns.toml beside it, under [{name}])")


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _bytes(count: int) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if count >= size:
            return f"{count / size:,.1f} {unit}"
    return f"{count:,} bytes"


def _rows_column(count: int) -> str:
    """A row count in a column of them: `     1 row `, `    12 rows`."""
    return f"{count:>11,} " + ("row " if count == 1 else "rows")
