"""README.md and docs/*.md are checked by running them: every ```console block is a terminal
session run with bash in a project of its own (`funnel init`, the bundled sample), and what
it prints must be what the block shows, so an example cannot go stale.

How a block is read:

- `$ command` lines are run in order in one shell (a `cd` carries over), each followed by
  the lines it prints, stdout and stderr as a terminal interleaves them. A block starts with
  a command; a line ending in `\\` continues the command on the next line.
- A line `...` (any indentation) stands for any number of lines, none included.
- Masked on both sides, as they change from run to run: durations (`0.59s`), sizes
  (`4.3 MiB`, `8 bytes`), UTC timestamps, pids; runs of spaces count as one.
- Paths: the project is `/home/ana/funnel` and `~` is `/home/ana` (the session's HOME).

What a block needs is said in the markdown, in comments right above it (rare, and each with
its reason):

- `<!-- readme-test: setup: COMMAND -->` runs COMMAND first, output unseen, and it must
  succeed (e.g. `funnel build`, or making a broken export for an error example);
- `<!-- readme-test: needs postgres -->` runs the block against a new, empty database of the
  local server (skipped, with the reason, when none answers); setup commands never see it
  (what they leave is kept for other blocks with the same setup);
- `<!-- readme-test: skip: REASON -->` does not run it (a live Pipedrive account, a cluster).
"""

from __future__ import annotations

import difflib
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from . import readme_example
from .conftest import REPO

FILES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^(`{3,})\s*([\w-]*)")
DIRECTIVE = re.compile(r"^<!--\s*readme-test:\s*(.*?)\s*-->\s*$")
HOME = "/home/ana"  # the home folder the examples show; the project is ~/funnel
MASKS = [
    (re.compile(r"\b\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\b"), "<time> UTC"),
    (re.compile(r"\b\d+(?:\.\d+)?s\b"), "<duration>"),
    (re.compile(r"\b\d+(?:\.\d+)? (?:bytes|KiB|MiB|GiB)\b"), "<size>"),
    (re.compile(r"\bpid \d+"), "pid <pid>"),
    (re.compile(r" {2,}"), " "),
]
BLOCK_TIMEOUT = 300


@dataclass
class Block:
    path: Path
    line: int  # of the opening fence, 1-based
    commands: list[tuple[str, list[str]]] = field(default_factory=list)  # (command, expected output lines)
    setup: list[str] = field(default_factory=list)
    needs: set[str] = field(default_factory=set)
    skip: str | None = None

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"


class MarkdownError(ValueError):
    pass


def parse_directive(text: str, where: str, block: Block) -> None:
    if text.startswith("setup:") and text[6:].strip():
        block.setup.append(text[6:].strip())
    elif text == "needs postgres":
        block.needs.add("postgres")
    elif text.startswith("skip:") and text[5:].strip():
        block.skip = text[5:].strip()
    else:
        raise MarkdownError(
            f"{where}: unknown readme-test comment {text!r}; use 'setup: COMMAND', 'needs postgres' or 'skip: REASON'"
        )


def console_blocks(path: Path, text: str | None = None) -> list[Block]:
    """The ```console blocks of a markdown file, with the readme-test comments above each."""
    lines = (path.read_text(encoding="utf-8") if text is None else text).splitlines()
    blocks: list[Block] = []
    pending: list[tuple[int, str]] = []  # readme-test comments waiting for their block
    i = 0
    while i < len(lines):
        where = f"{path.name} line {i + 1}"
        directive = DIRECTIVE.match(lines[i])
        fence = FENCE.match(lines[i])
        if directive:
            pending.append((i + 1, directive.group(1)))
            i += 1
            continue
        if not fence:
            if pending and lines[i].strip():
                raise MarkdownError(
                    f"{path.name} line {pending[0][0]}: a readme-test comment must be right above a ```console block"
                )
            i += 1
            continue
        ticks, lang = fence.group(1), fence.group(2)
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == ticks), None)
        if end is None:
            raise MarkdownError(f"{where}: the block is never closed")
        if lang != "console":
            if pending:
                raise MarkdownError(
                    f"{path.name} line {pending[0][0]}: a readme-test comment must be right above a ```console block"
                )
            i = end + 1
            continue
        block = Block(path, i + 1)
        for at, directive_text in pending:
            parse_directive(directive_text, f"{path.name} line {at}", block)
        pending = []
        body = lines[i + 1 : end]
        if not body or not body[0].startswith("$ "):
            raise MarkdownError(f"{where}: a console block starts with a '$ command' line")
        k = 0
        while k < len(body):
            if body[k].startswith("$ "):
                command = body[k][2:]
                while command.endswith("\\") and k + 1 < len(body):
                    k += 1
                    command = command + "\n" + body[k]
                block.commands.append((command, []))
            else:
                block.commands[-1][1].append(body[k])
            k += 1
        blocks.append(block)
        i = end + 1
    if pending:
        raise MarkdownError(f"{path.name} line {pending[0][0]}: a readme-test comment must be right above a ```console block")
    return blocks


def normalize(line: str) -> str:
    for pattern, replacement in MASKS:
        line = pattern.sub(replacement, line)
    return line.rstrip()


def matches(expected: list[str], actual: list[str]) -> bool:
    """Whether `actual` is `expected`, line for line after masking, a `...` line standing for any lines."""
    pattern = "".join(r"(?:[^\n]*\n)*?" if line.strip() == "..." else re.escape(normalize(line)) + "\n" for line in expected)
    return re.fullmatch(pattern, "".join(normalize(line) + "\n" for line in actual)) is not None


def trimmed(lines: list[str]) -> list[str]:
    """Output without its trailing blank lines (in the markdown they separate commands)."""
    while lines and not lines[-1].strip():
        lines = lines[:-1]
    return lines


MARK = "\x1eREADME-TEST-COMMAND"


def script(block: Block) -> str:
    """The block as one bash script: a mark before each command's output, then the command;
    `$?` stays the previous command's, as in a terminal."""
    parts = ["set +e", "__rc=0"]
    for command, _ in block.commands:
        parts.append(f"printf '%s\\n' '{MARK}'; (exit $__rc)")
        parts.append(f"{command}\n__rc=$?")
    return "\n".join(parts) + "\n"


def differences(block: Block, outputs: list[list[str]]) -> str:
    """Each command whose output differs, as a diff of what the block shows and what it printed."""
    shown = []
    for (command, expected), actual in zip(block.commands, outputs, strict=True):
        if not matches(trimmed(expected), trimmed(actual)):
            title = f"$ {command}"
            diff = difflib.unified_diff(trimmed(expected), trimmed(actual), "as written", "as run", lineterm="", n=2)
            shown.append("\n".join([title, *list(diff)[2:]]))
    return "\n".join(shown)


def funnel_bin(tmp: Path) -> str:
    """The folder of the `funnel` command to test: the one installed beside this Python, or a
    stand-in running `python -m funnel`."""
    here = Path(sys.executable).parent
    if (here / "funnel").exists():
        return str(here)
    shim = tmp / "bin"
    shim.mkdir(exist_ok=True)
    (shim / "funnel").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m funnel "$@"\n')
    (shim / "funnel").chmod(0o755)
    return f"{shim}{os.pathsep}{here}"


class Homes:
    """The home folder the blocks run in, one path for the whole session (a short one, as
    /home/ana is: a long path would wrap lines the examples show whole), holding ~/funnel,
    a project from `funnel init` without the models README.md does not name (a fork's own;
    tests/readme_example.py). What a list of setup commands leaves in it is kept, so
    blocks with the same setup (most: `funnel build`) share one run of it: a build copied
    back to the same path, its files' times kept, is the build it was."""

    def __init__(self, snapshots: Path) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="readme-")).resolve()
        self.snapshots = snapshots
        self.env = base_env(self.home, snapshots)
        self.kept: dict[tuple[str, ...], Path] = {}

    def prepare(self, setup: tuple[str, ...], where: str) -> None:
        """~ as the setup commands leave it, run in ~/funnel."""
        if setup in self.kept:
            shutil.rmtree(self.home)
            shutil.copytree(self.kept[setup], self.home, symlinks=True)
            return
        if setup:
            self.prepare(setup[:-1], where)
            command = setup[-1]
        else:
            shutil.rmtree(self.home)
            self.home.mkdir()
            command = "funnel init funnel"
        cwd = self.home / "funnel" if setup else self.home
        result = subprocess.run(
            ["bash", "-c", command], cwd=cwd, env=self.env, capture_output=True, text=True, timeout=BLOCK_TIMEOUT
        )
        assert result.returncode == 0, f"{where}: setup `{command}` failed:\n{result.stdout}{result.stderr}"
        if not setup:  # the example as README describes it (tests/readme_example.py)
            sql = self.home / "funnel" / "sql"
            readme_example.leave_out(sql, readme_example.unnamed(REPO / "README.md", sql))
        self.kept[setup] = self.snapshots / str(len(self.kept))
        shutil.copytree(self.home, self.kept[setup], symlinks=True)


@pytest.fixture(scope="session")
def homes(tmp_path_factory: pytest.TempPathFactory):
    made = Homes(tmp_path_factory.mktemp("readme-snapshots"))
    yield made
    shutil.rmtree(made.home, ignore_errors=True)


def base_env(home: Path, tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FUNNEL_", "PG", "PIPEDRIVE_"))}
    env.update(
        HOME=str(home),
        PATH=funnel_bin(tmp) + os.pathsep + env.get("PATH", ""),
        PYTHONUNBUFFERED="1",  # stdout and stderr interleave as on a terminal
        PYTHONIOENCODING="utf-8",
        COLUMNS="120",  # a terminal as wide as the examples': tables with their bars
        TZ="UTC",
        LC_ALL="C.UTF-8",
    )
    return env


def postgres_database() -> tuple[dict[str, str] | None, str]:
    """A new database on the local PostgreSQL server, as PG* variables (or None and why not)."""
    try:
        import psycopg

        server = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "dbname": "postgres"}
        with psycopg.connect(**server, connect_timeout=3, autocommit=True) as conn:  # type: ignore[arg-type]
            name = f"readme_{secrets.token_hex(4)}"
            conn.execute(f'create database "{name}"')
    except Exception as e:
        return None, f"no PostgreSQL server answers at 127.0.0.1:5432 as postgres ({str(e).strip().splitlines()[0]})"
    return {"PGHOST": "127.0.0.1", "PGPORT": "5432", "PGUSER": "postgres", "PGDATABASE": name}, name


def drop_database(name: str) -> None:
    import psycopg

    with psycopg.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres", autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')


def run_block(block: Block, homes: Homes) -> list[list[str]]:
    """What each command of the block prints when run, paths shown as the examples show them."""
    env = dict(homes.env)
    database = None
    if "postgres" in block.needs:
        pg, made = postgres_database()
        if pg is None:
            pytest.skip(f"{block.name} needs PostgreSQL: {made}")
        database = made
        env.update(pg)
    try:
        homes.prepare(tuple(block.setup), block.name)
        result = subprocess.run(
            ["bash", "-c", script(block)],
            cwd=homes.home / "funnel",
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=BLOCK_TIMEOUT,
        )
    finally:
        if database is not None:
            drop_database(database)
    output = result.stdout.replace(str(homes.home), HOME)
    if database is not None:
        output = output.replace(database, "postgres")
    before, *outputs = output.split(MARK + "\n")
    assert not before.strip() and len(outputs) == len(block.commands), output
    return [text.splitlines() for text in outputs]


def all_blocks() -> list[Block]:
    return [block for path in FILES for block in console_blocks(path)]


@pytest.mark.parametrize("block", all_blocks(), ids=lambda block: block.name)
def test_console_block_prints_what_it_shows(block: Block, homes: Homes) -> None:
    if block.skip:
        pytest.skip(f"{block.name}: {block.skip} (readme-test: skip in the markdown)")
    diff = differences(block, run_block(block, homes))
    if diff:
        pytest.fail(f"{block.name} is not what its commands print; update the markdown (or the code):\n{diff}", pytrace=False)


def test_readme_has_its_console_blocks_found() -> None:
    """README's examples are console blocks (the test above would pass on none at all)."""
    assert len(console_blocks(REPO / "README.md")) >= 8


def test_an_altered_output_line_fails(homes: Homes) -> None:
    """The check has teeth: a README block that passes, with one output line changed, fails."""
    block = next(b for b in console_blocks(REPO / "README.md") if b.setup == ["funnel build"] and not b.needs and not b.skip)
    outputs = run_block(block, homes)
    assert differences(block, outputs) == ""
    n, (command, output) = next(
        (n, c) for n, c in enumerate(block.commands) if any(line.strip() not in ("", "...") for line in c[1])
    )
    at = next(i for i, line in enumerate(output) if line.strip() not in ("", "..."))
    digit = re.search(r"\d", output[at])
    line = (
        output[at][: digit.start()] + str((int(digit.group()) + 1) % 10) + output[at][digit.end() :]
        if digit
        else output[at] + "!"
    )
    block.commands[n] = (command, [*output[:at], line, *output[at + 1 :]])
    assert differences(block, outputs).startswith(f"$ {command}\n")


def test_masks_and_ellipsis() -> None:
    assert matches(
        ["Done: env dev in 0.59s", "  removed  target/dev.duckdb (4.3 MiB)"],
        ["Done: env dev in 12.01s", "  removed  target/dev.duckdb (5.0 MiB)"],
    )
    assert matches(["a", "...", "z"], ["a", "b", "c", "z"]) and matches(["a", "...", "z"], ["a", "z"])
    assert not matches(["a", "...", "z"], ["a", "b"])
    assert not matches(["2024-02-01,Step 1: Lead Generation,1.0,237"], ["2024-02-01,Step 1: Lead Generation,1.0,238"])
    assert not matches(["14,604 rows"], ["14,605 rows"])


@pytest.mark.parametrize(
    "text, message",
    [
        ("<!-- readme-test: skip: reason -->\n\ntext\n```console\n$ funnel\n```\n", "right above"),
        ("<!-- readme-test: frobnicate -->\n```console\n$ funnel\n```\n", "unknown readme-test comment"),
        ("```console\noutput without a command\n```\n", "starts with a '\\$ command'"),
        ("```console\n$ funnel\n", "never closed"),
    ],
)
def test_markdown_mistakes_are_errors_not_skips(text: str, message: str) -> None:
    with pytest.raises(MarkdownError, match=message):
        console_blocks(Path("README.md"), text)
