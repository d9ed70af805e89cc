"""What a build will load, run and test, and why: decided before anything runs.

A plan compares the compiled project and the export on disk with what the committed build
recorded (`_funnel.build_info`): each source's fingerprint (the SHA-256 of its file, its
declaration in sql/sources.toml, the funnel that loads it), each model's and each data
test's fingerprint (its rendered SQL). Unchanged sources are reused from the committed
build; a changed source is reloaded and every model downstream of it runs, whatever
`--select` says, so a published build only ever holds data from one export. `--select`
narrows which edited models are picked up; a model that runs takes everything downstream
of it along, for the same reason. Nothing changed: the plan is empty and nothing is written.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from funnel import __version__
from funnel.build.record import BuildRecord
from funnel.engine.csv_file import require_regular_file
from funnel.errors import SourceError

if TYPE_CHECKING:
    from funnel.project.manifest import Manifest
    from funnel.project.sources import Source

Action = Literal["load", "reuse", "run", "test"]
Kind = Literal["source", "model", "test"]

_UNSET = object()
HASH_CHUNK = 1 << 20  # bytes read at a time while hashing


@dataclass(frozen=True)
class Fingerprint:
    """Everything that decides a loaded table: the file's content, the source's declaration
    in sql/sources.toml (columns, types, formats, rules) and the funnel that loads it.

    `sha256` is the SHA-256 of the file's bytes, as `sha256sum` prints it: the whole file is
    hashed whenever a build decides whether to reuse a table, since an edit can keep both
    the size and the modification time (`touch -r`, `rsync -t`, `cp -p`, a restore).
    Path, size and mtime say which file it was; only the content counts.
    """

    path: str
    size: int
    mtime_ns: int
    sha256: str
    declaration: str = ""  # declaration_fingerprint() of the source; "" in a record older than it
    funnel_version: str = ""  # that loaded it (its value rules are part of the code)
    absent: bool = False  # an optional file that is not in the export: an empty table

    def same_content(self, other: Fingerprint | None) -> bool:
        return other is not None and other.absent == self.absent and other.size == self.size and other.sha256 == self.sha256

    @classmethod
    def from_record(cls, record: Any) -> Fingerprint | None:
        """A fingerprint as a build recorded it; None when the record is not one (a build
        from before a field existed, or damaged): the source is then loaded again."""
        if not isinstance(record, dict):
            return None
        try:
            return cls(
                path=str(record["path"]),
                size=int(record["size"]),
                mtime_ns=int(record["mtime_ns"]),
                sha256=str(record["sha256"]),
                declaration=str(record.get("declaration", "")),
                funnel_version=str(record.get("funnel_version", "")),
                absent=record.get("absent") is True,
            )
        except (KeyError, TypeError, ValueError):
            return None


def fingerprint(path: Path, previous: Fingerprint | None = None) -> Fingerprint:
    """The file's fingerprint (the declaration left empty: see `source_fingerprint`).

    `previous`: a fingerprint this same process took moments ago (a build plans twice, before
    and after taking the lock); it is reused when path, size and mtime still match, so a file
    is hashed once per build. Never pass a recorded one: the content decides, not the mtime.
    """
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise SourceError(
            f"{path}: file not found; export it from Pipedrive or point --raw-data at the folder that has it."
        ) from None
    require_regular_file(path, stat.st_mode)  # a named pipe or a device would hang the hashing
    if previous and (previous.path, previous.size, previous.mtime_ns) == (str(path), stat.st_size, stat.st_mtime_ns):
        return previous
    digest = hashlib.sha256()
    try:
        with path.open("rb") as f:
            buffer = bytearray(HASH_CHUNK)
            view = memoryview(buffer)
            while size := f.readinto(buffer):
                digest.update(view[:size])
    except IsADirectoryError:
        raise SourceError(f"{path}: is a folder, expected a CSV file.") from None
    return Fingerprint(str(path), stat.st_size, stat.st_mtime_ns, digest.hexdigest())


def declaration_fingerprint(source: Source) -> str:
    """A hash of how a source's file is read, as sql/sources.toml declares it: its schema,
    table, columns in header order with their types, timestamp format and value rules."""
    declared = [
        source.source_name,
        source.table,
        list(source.columns.items()),
        source.timestamp_format,
        [[c.column, c.when_column, list(c.when_values), c.type, c.format] for c in source.conditional],
        *([source.optional, [list(p) for p in source.patterns]] if source.optional or source.patterns else []),
    ]
    return hashlib.sha256(json.dumps(declared).encode()).hexdigest()


def source_fingerprint(folder: Path, source: Source, previous: Fingerprint | None = None) -> Fingerprint:
    """The fingerprint of `source`'s file in `folder` with its declaration (`previous`: as in `fingerprint`).

    An optional source with nothing at its path (not even a broken link) has the
    fingerprint of absence: its table is empty.
    """
    path = folder / source.file_name
    if source.optional and not os.path.lexists(path):
        fp = Fingerprint(str(path), 0, 0, "", absent=True)
    else:
        fp = fingerprint(path, previous)
    return replace(fp, declaration=declaration_fingerprint(source), funnel_version=__version__)


def _hash_all(folder: Path, sources: tuple[Source, ...], seen: dict[str, Fingerprint]) -> list[Fingerprint]:
    """Every source's fingerprint, the files hashed side by side: hashlib and file reads let
    other threads run, so the largest file, not the sum of all, sets the time."""
    from concurrent.futures import ThreadPoolExecutor

    if len(sources) < 2:
        return [source_fingerprint(folder, s, seen.get(s.table)) for s in sources]
    with ThreadPoolExecutor(max_workers=min(len(sources), os.cpu_count() or 1, 4)) as pool:
        return list(pool.map(lambda s: source_fingerprint(folder, s, seen.get(s.table)), sources))


def why_reload(new: Fingerprint, old: Fingerprint | None) -> str | None:
    """Why a source must be loaded again, given what the last build recorded; None: reuse it."""
    if old is None:
        return "new source"
    reasons = []
    if new.absent != old.absent:
        reasons.append(f"{Path(new.path).name} " + ("is gone (optional: an empty table)" if new.absent else "appeared"))
    elif not new.same_content(old):
        reasons.append(f"{Path(new.path).name} changed" + (" (another export)" if old.path != new.path else ""))
    if not old.declaration:
        reasons.append("recorded by an older funnel")
    elif old.declaration != new.declaration:
        reasons.append("its declaration in sql/sources.toml changed")
    if old.funnel_version != new.funnel_version:  # the loader's own rules are part of funnel
        reasons.append(f"loaded by funnel {old.funnel_version or 'of an older kind'}")
    return "; ".join(reasons) or None


@dataclass(frozen=True)
class Step:
    """One line of the plan: what happens to a source, model or data test, and why."""

    kind: Kind
    name: str
    action: Action
    reason: str


@dataclass(frozen=True)
class Previous:
    """What the committed build recorded about itself (empty when there is none)."""

    sources: dict[str, Fingerprint] = field(default_factory=dict)
    models: dict[str, str] = field(default_factory=dict)  # name -> fingerprint
    tests: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> fingerprint, failures, error
    funnel_version: str | None = None
    record: BuildRecord = field(default_factory=BuildRecord)

    @classmethod
    def from_record(cls, record: BuildRecord) -> Previous:
        return cls(
            sources={
                name: fp for name, found in record.fingerprints.items() if (fp := Fingerprint.from_record(found)) is not None
            },
            models=dict(record.models),
            tests=dict(record.test_results),
            funnel_version=record.funnel_version,
            record=record,
        )


@dataclass(frozen=True)
class Plan:
    """The whole decision: every source, model and test with its action and reason."""

    env: str
    full: bool
    steps: tuple[Step, ...]
    fingerprints: dict[str, Fingerprint]
    previous: Previous

    def names(self, kind: Kind, action: Action) -> list[str]:
        return [s.name for s in self.steps if s.kind == kind and s.action == action]

    @property
    def up_to_date(self) -> bool:
        return not any(s.action in ("load", "run", "test") for s in self.steps)

    def to_json(self) -> str:
        return json.dumps(
            {"env": self.env, "full": self.full, "up_to_date": self.up_to_date, "steps": [vars(s) for s in self.steps]},
            indent=2,
        )


def model_fingerprint(manifest: Manifest, name: str) -> str:
    """A hash of what a model computes: its rendered SQL and materialization, or a seed's bytes."""
    model = manifest.graph.models[name]
    digest = hashlib.sha256(f"{model.materialized}\0{model.sql}\0{sorted(model.seed_columns.items())}".encode())
    if model.is_seed:
        digest.update(model.path.read_bytes())
    return digest.hexdigest()


def test_fingerprint(sql: str, severity: str) -> str:
    return hashlib.sha256(f"{severity}\0{sql}".encode()).hexdigest()


def make(
    manifest: Manifest,
    previous: Previous | None,
    select: list[str] | None = None,
    full_refresh: bool = False,
    known: dict[str, Fingerprint] | None = None,
) -> Plan:
    """Decide what a build of `manifest` does, given what the committed build recorded.

    `select`: the model names `--select` chose (None: every model). `known`: fingerprints
    this process already took (a file whose size or mtime has changed since is hashed again).
    Every other file is hashed whole: what the last build recorded never stands in for it.
    """
    prior = previous or Previous()
    folder = manifest.env.export_folder()
    seen = known or {}
    fingerprints = dict(zip((s.table for s in manifest.sources), _hash_all(folder, manifest.sources, seen), strict=True))
    reason_full = (
        "--full-refresh"
        if full_refresh
        else "no build yet"
        if previous is None
        else f"built by funnel {prior.funnel_version}"
        if prior.funnel_version != __version__
        else f"the last build ran on {prior.record.engine}"
        if prior.record.engine != "duckdb"
        else None
    )
    steps: list[Step] = []
    if reason_full:
        steps += [Step("source", t, "load", reason_full) for t in fingerprints]
        steps += [Step("model", n, "run", reason_full) for n in manifest.graph.order]
        steps += [Step("test", t.name, "test", reason_full) for t in manifest.tests]
        return Plan(manifest.env.name, True, tuple(steps), fingerprints, prior)

    changed: dict[str, str] = {}  # source table -> why it is reloaded
    for table, fp in fingerprints.items():
        if reason := why_reload(fp, prior.sources.get(table)):
            changed[table] = reason
    for table in fingerprints:
        steps.append(
            Step("source", table, "load", changed[table]) if table in changed else Step("source", table, "reuse", "unchanged")
        )

    chosen = set(manifest.graph.order if select is None else select)
    # The record says which vars the whole build was made with: a model reading a var that
    # changed runs whatever --select says, or the record would be wrong about it.
    recorded_vars = prior.record.vars
    changed_vars = {k for k in {*manifest.vars, *recorded_vars} if manifest.vars.get(k, _UNSET) != recorded_vars.get(k, _UNSET)}
    why: dict[str, str] = {}
    for name in manifest.graph.order:
        model = manifest.graph.models[name]
        if name not in prior.models:
            why[name] = "new model"  # whether selected or not: the build must hold every model
        elif name in chosen and prior.models[name] != model_fingerprint(manifest, name):
            why[name] = "SQL changed" if not model.is_seed else "seed changed"
        elif (moved := [v for v in model.vars if v in changed_vars]) and prior.models[name] != model_fingerprint(manifest, name):
            why[name] = f"var {moved[0]} changed"
        elif reloaded := [t for t in model.sources if t in changed]:
            why[name] = f"source {reloaded[0]} reloaded"
        elif upstream := [r for r in model.refs if r in why]:
            why[name] = f"downstream of {upstream[0]}"
    for name in manifest.graph.order:
        steps.append(Step("model", name, "run", why[name]) if name in why else Step("model", name, "reuse", "unchanged"))

    for test in manifest.tests:
        old_test = prior.tests.get(test.name)
        if old_test is None:
            steps.append(Step("test", test.name, "test", "new test"))
        elif old_test.get("fingerprint") != test_fingerprint(test.sql, test.severity):
            steps.append(Step("test", test.name, "test", "test changed"))
        elif ran := [m for m in test.depends_on if m in why]:
            steps.append(Step("test", test.name, "test", f"{ran[0]} runs"))
        elif reloaded := [t for t in test.sources if t in changed]:
            steps.append(Step("test", test.name, "test", f"source {reloaded[0]} reloaded"))
        else:
            steps.append(Step("test", test.name, "reuse", "unchanged"))
    return Plan(manifest.env.name, False, tuple(steps), fingerprints, prior)


def fingerprints_json(fingerprints: dict[str, Fingerprint]) -> dict[str, Any]:
    return {name: vars(fp) for name, fp in fingerprints.items()}


def describe(plan: Plan, detail: bool = False) -> list[str]:
    """The plan as lines a person reads: a summary, then what loads and runs, and why.

    Tests are listed only with `detail` (`--dry-run`); a full build lists nothing more.
    """
    if plan.up_to_date:
        return [f"env {plan.env} is up to date: same export, same SQL, same tests; nothing to do."]
    counts = []
    verbs: tuple[tuple[Kind, Action], ...] = (("source", "load"), ("model", "run"), ("test", "test"))
    for kind, verb in verbs:
        total = sum(1 for s in plan.steps if s.kind == kind)
        acting = len(plan.names(kind, verb))
        counts.append(f"{verb} {acting} of {total} {kind}s" if acting < total else f"{verb} {total} {kind}s")
    if plan.full:
        lines = [f"Plan for env {plan.env}: full build ({plan.steps[0].reason}): {', '.join(counts)}"]
    else:
        lines = [f"Plan for env {plan.env}: {', '.join(counts)}; the rest is reused from the last build"]
    for s in plan.steps:
        if s.action != "reuse" and (detail or (not plan.full and s.kind != "test")):
            lines.append(f"  {s.action:<5} {s.kind:<6} {s.name:<40} {s.reason}")
    lines += absent_notes(plan.fingerprints)
    return lines


def absent_notes(fingerprints: dict[str, Fingerprint]) -> list[str]:
    """One line per optional file the export does not have: its models build empty."""
    return [
        f"  note  source {table:<33} {Path(fp.path).name} is not in the export (optional): an empty table"
        for table, fp in fingerprints.items()
        if fp.absent
    ]
