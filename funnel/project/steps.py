"""The funnel's steps as the account's stages imply them: what `funnel steps` shows and writes.

sql/seeds/funnel_steps.csv maps each stage and call type to a numbered step. The shipped
seed describes the original company's pipeline; an account with other stages needs its
own. `derive` reads it off the export: for each pipeline one step per stage, in the
stages' order in their pipeline (`order_nr`), named `Step N: <stage name>`, and the call
steps the user names: the first after stage step 2 (2.1), the second after stage step 3
(3.1), and so on, as far as the pipeline has stages. With several pipelines a `pipeline` column names each step's pipeline
and every pipeline's steps are numbered from 1.

    >>> stages = [Stage(1, "Qualified"), Stage(2, "Contact Made"), Stage(3, "Demo")]
    >>> [s.kpi_name for s in derive(stages, {"call": "Call"}, ["call"])]
    ['Step 1: Qualified', 'Step 2: Contact Made', 'Step 2.1: Call', 'Step 3: Demo']
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from funnel import atomic
from funnel.errors import ConfigError, SourceError, did_you_mean, shorten

SEED = Path("seeds") / "funnel_steps.csv"  # under sql/
COLUMNS = ("funnel_step", "kpi_name", "stage_id", "activity_type")
PIPELINE = "pipeline"  # the seed's optional last column
STAGE_COLUMNS = ("stage_id", "stage_name", "pipeline_id", "pipeline_name", "order_nr", "deal_probability")
MAX_STAGES = 99  # funnel_step is DECIMAL(3,1)
WRITE = "funnel steps --write"


@dataclass(frozen=True)
class Stage:
    """One row of stages.csv. Without the pipeline columns: one pipeline, ordered by stage id."""

    stage_id: int
    name: str
    pipeline_id: int | None = None
    pipeline_name: str | None = None
    order_nr: int | None = None

    @property
    def pipeline(self) -> str | None:
        """The pipeline's name as the seed's `pipeline` column spells it (stg_stages' pipeline_name)."""
        if self.pipeline_name:
            return self.pipeline_name
        return None if self.pipeline_id is None else f"pipeline {self.pipeline_id}"


@dataclass(frozen=True)
class Step:
    """One row of funnel_steps.csv: a stage step (stage_id) or a call step (activity_type)."""

    funnel_step: str  # as written: 1.0, 2.1
    kpi_name: str
    stage_id: int | None = None
    activity_type: str | None = None
    pipeline: str | None = None


def read_stages(folder: Path) -> list[Stage]:
    """The stages of the export in `folder` (stages.csv: stage_id,stage_name and, optionally,
    pipeline_id,pipeline_name,order_nr,deal_probability)."""
    path = folder / "stages.csv"
    header, rows = _read_csv(path)
    if len(header) < 2 or tuple(header) != STAGE_COLUMNS[: len(header)]:
        raise SourceError(
            f"{path} line 1: the header must be stage_id,stage_name or {','.join(STAGE_COLUMNS)} "
            "(or leave out only the last ones)."
        )
    stages = []
    for line, row in rows:
        values = dict(zip(header, row, strict=True))
        if not values["stage_id"]:
            raise SourceError(f"{path} line {line}, column stage_id: empty; every stage has an id.")
        stages.append(
            Stage(
                _whole(path, line, "stage_id", values["stage_id"]),  # type: ignore[arg-type]
                values["stage_name"],
                _whole(path, line, "pipeline_id", values.get("pipeline_id", "")),
                values.get("pipeline_name") or None,
                _whole(path, line, "order_nr", values.get("order_nr", "")),
            )
        )
    if not stages:
        raise SourceError(f"{path}: no stages; export the account's stages (funnel pull writes them).")
    return stages


def read_activity_types(folder: Path) -> dict[str, str]:
    """Type key -> display name, from activity_types.csv (id,name,active,type)."""
    path = folder / "activity_types.csv"
    header, rows = _read_csv(path)
    if header != ["id", "name", "active", "type"]:
        raise SourceError(f"{path} line 1: the header must be exactly id,name,active,type.")
    names: dict[str, str] = {}
    for _, row in rows:
        names.setdefault(row[3], row[1])
    return names


def read_steps(sql_dir: Path) -> list[Step]:
    """The project's steps: sql/seeds/funnel_steps.csv, in file order."""
    path = sql_dir / SEED
    header, rows = _read_csv(path)
    if tuple(header) not in (COLUMNS, (*COLUMNS, PIPELINE)):
        raise SourceError(f"{path} line 1: the header must be {','.join(COLUMNS)}[,{PIPELINE}]; {WRITE} writes it.")
    steps = []
    for line, row in rows:
        values = dict(zip(header, row, strict=True))
        stage_id = _whole(path, line, "stage_id", values["stage_id"])
        call, pipeline = values["activity_type"] or None, values.get(PIPELINE) or None
        steps.append(Step(values["funnel_step"], values["kpi_name"], stage_id, call, pipeline))
    return steps


def first_pipeline(sql_dir: Path) -> str | None:
    """The pipeline of the seed's first step: what the funnel counts unless the var `pipeline`
    names another. None for a seed without a pipeline column (one pipeline)."""
    path = sql_dir / SEED
    try:
        with path.open(encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f)
            header, first = next(reader, []), next(reader, [])
    except OSError:
        return None  # no seed: the build says so
    if PIPELINE not in header or len(first) != len(header):
        return None
    return first[header.index(PIPELINE)] or None


def pipelines_of(sql_dir: Path) -> list[str]:
    """The pipelines the seed names, in file order."""
    return list(dict.fromkeys(s.pipeline for s in read_steps(sql_dir) if s.pipeline))


def _one_name_each(stages: list[Stage]) -> None:
    """SourceError naming the pipelines of stages.csv that share a name, or a pipeline whose
    stages give it two names: the seed tells pipelines apart by name."""
    ids: dict[str | None, set[int | None]] = {}
    names: dict[int | None, set[str | None]] = {}
    for stage in stages:
        ids.setdefault(stage.pipeline, set()).add(stage.pipeline_id)
        names.setdefault(stage.pipeline_id, set()).add(stage.pipeline)
    for name, found in ids.items():
        if len(found) > 1:
            listed = ", ".join(sorted(str(i) for i in found))
            raise SourceError(f"stages.csv: pipelines {listed} are all named {name!r}; rename one in Pipedrive and pull again.")
    for pipeline_id, given in names.items():
        if len(given) > 1:
            listed = ", ".join(sorted(repr(n) for n in given))
            raise SourceError(f"stages.csv: the stages of pipeline {pipeline_id} name it {listed}; give them one name.")


def derive(stages: list[Stage], activity_types: dict[str, str], calls: list[str]) -> list[Step]:
    """The steps the export's stages imply, with call steps for the activity types `calls`."""
    for key in calls:
        if key not in activity_types:
            raise ConfigError(
                f"--calls: activity type {key!r} is not in activity_types.csv." + did_you_mean(key, list(activity_types))
            )
    if len(set(calls)) != len(calls):
        raise ConfigError("--calls: each activity type once; a type counted twice counts its deals twice.")
    by_pipeline: dict[tuple[int, int | None], list[Stage]] = {}
    for stage in stages:
        by_pipeline.setdefault((stage.pipeline_id is not None, stage.pipeline_id), []).append(stage)
    several = len(by_pipeline) > 1
    if several:
        _one_name_each(stages)
    steps: list[Step] = []
    for group in sorted(by_pipeline, key=lambda k: (k[0], k[1] or 0)):
        ordered = sorted(by_pipeline[group], key=lambda s: (s.order_nr if s.order_nr is not None else s.stage_id, s.stage_id))
        pipeline = ordered[0].pipeline if several else None
        where = f"pipeline {pipeline!r}" if pipeline else "stages.csv"
        if len(ordered) > MAX_STAGES:
            raise SourceError(f"{where}: {len(ordered)} stages; a funnel has at most {MAX_STAGES} steps.")
        for number, stage in enumerate(ordered, start=1):
            steps.append(Step(f"{number}.0", f"Step {number}: {stage.name}", stage.stage_id, None, pipeline))
            if 2 <= number <= len(calls) + 1:  # a pipeline of fewer stages has fewer call steps
                call = calls[number - 2]
                steps.append(Step(f"{number}.1", f"Step {number}.1: {activity_types[call]}", None, call, pipeline))
    return steps


def to_csv(steps: list[Step]) -> str:
    """The seed's text: a pipeline column only when a step names a pipeline."""
    with_pipeline = any(s.pipeline for s in steps)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*COLUMNS, PIPELINE] if with_pipeline else COLUMNS)
    for s in steps:
        row = [s.funnel_step, s.kpi_name, "" if s.stage_id is None else s.stage_id, s.activity_type or ""]
        writer.writerow([*row, s.pipeline or ""] if with_pipeline else row)
    return out.getvalue()


def write(sql_dir: Path, steps: list[Step]) -> Path:
    """Replace sql/seeds/funnel_steps.csv with `steps` (whole or not at all), and declare its
    pipeline column in seeds.toml when it has one."""
    return atomic.write_text(sql_dir / SEED, to_csv(steps))


@dataclass(frozen=True)
class Line:
    """One line of `funnel steps`: a step the export implies beside the project's step for
    the same stage or call type, and what differs ('' when nothing does)."""

    pipeline: str | None
    derived: Step | None
    current: Step | None
    mismatch: str


def compare(derived: list[Step], current: list[Step], stages: list[Stage], activity_types: dict[str, str]) -> list[Line]:
    """The export's steps next to the project's, matched by stage id or call type; the
    project's steps that match nothing come last."""
    names = {s.stage_id: s.name for s in stages}
    by_stage = {s.stage_id: s for s in current if s.stage_id is not None}
    by_call: dict[tuple[str | None, str | None], Step] = {(s.pipeline, s.activity_type): s for s in current if s.activity_type}
    lines, used = [], set()
    for step in derived:
        if step.stage_id is not None:
            mine = by_stage.get(step.stage_id)
        else:
            mine = by_call.get((step.pipeline, step.activity_type)) or by_call.get((None, step.activity_type))
        used.add(id(mine))
        lines.append(Line(step.pipeline, step, mine, _mismatch(step, mine, names)))
    for step in current:
        if id(step) not in used:
            if step.stage_id is not None and step.stage_id not in names:
                why = "no such stage"
            elif step.activity_type and step.activity_type not in activity_types:
                why = "no such activity type"
            else:
                why = "not a step of the export"
            lines.append(Line(step.pipeline, None, step, why))
    return lines


def _mismatch(derived: Step, mine: Step | None, names: dict[int, str]) -> str:
    if mine is None:
        return "missing"
    if derived.stage_id is not None and names[derived.stage_id].lower() not in _after_prefix(mine.kpi_name):
        return "name differs"
    if (mine.pipeline or None) != (derived.pipeline or None):
        return "pipeline differs"
    if _number(mine.funnel_step) != _number(derived.funnel_step):
        return "number differs"
    return ""


def _after_prefix(kpi_name: str) -> str:
    """The step's name after `Step N:`, lowercased (as the data test funnel_steps_match_the_export reads it)."""
    import re

    return re.sub(r"^ *step +[0-9.]+ *: *", "", kpi_name.lower())


def _number(text: str) -> str:
    try:
        return f"{float(text):.1f}"
    except ValueError:
        return text


def _read_csv(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    try:
        with path.open(encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f)
            header = next(reader, [])
            rows = []
            for row in reader:
                if row:
                    if len(row) != len(header):
                        raise SourceError(f"{path} line {reader.line_num}: {len(row)} fields, expected {len(header)}.")
                    rows.append((reader.line_num, row))
    except FileNotFoundError:
        raise SourceError(f"{path}: file not found; export it from Pipedrive (funnel pull) or point --raw-data at it.") from None
    except (UnicodeDecodeError, csv.Error) as e:
        raise SourceError(f"{path}: not a readable UTF-8 CSV file ({e}).") from None
    return header, rows


def _whole(path: Path, line: int, column: str, text: str) -> int | None:
    if text == "":
        return None
    if not text.lstrip("-").isdigit():
        raise SourceError(f"{path} line {line}, column {column}: {text!r} is not a whole number.")
    return int(text)


@dataclass(frozen=True)
class Steps:
    """What `funnel steps` shows: the export's steps next to the project's."""

    export: Path
    seed: Path
    stages: list[Stage]
    calls: list[str]
    derived: list[Step]
    lines: list[Line]
    written: bool = False

    @property
    def pipelines(self) -> list[str | None]:
        return list(dict.fromkeys(s.pipeline for s in self.derived))

    @property
    def differ(self) -> int:
        return sum(1 for line in self.lines if line.mismatch)


def steps(sql_dir: Path, folder: Path, calls: list[str] | None = None, write_seed: bool = False) -> Steps:
    """The steps the export in `folder` implies beside the project's (`calls` None: the call
    types of the project's steps that the export has); with `write_seed`, written to the seed.

    Raises SourceError for an unreadable stages.csv, activity_types.csv or seed, and
    ConfigError for a call type the export does not have.
    """
    stages, types = read_stages(folder), read_activity_types(folder)
    path = sql_dir / SEED
    current = read_steps(sql_dir) if path.exists() or not write_seed else []
    if calls is None:
        calls = list(dict.fromkeys(s.activity_type for s in current if s.activity_type in types))
    derived = derive(stages, types, calls)
    if write_seed:
        write(sql_dir, derived)
        current = read_steps(sql_dir)
    return Steps(folder, path, stages, calls, derived, compare(derived, current, stages, types), write_seed)


def with_pipeline(variables: dict[str, Any], sql_dir: Path, where: str = "var") -> dict[str, Any]:
    """`variables` with the var `pipeline` (the pipeline rep_sales_funnel_monthly and the
    analyses count) set to the seed's first pipeline unless given; a given one must be a
    pipeline of the seed, or ConfigError names `where` it was set (as definitions.check does).
    A seed without a pipeline column is one pipeline: no var."""
    named = variables.get(PIPELINE)
    if named is None:
        first = first_pipeline(sql_dir)
        return variables if first is None else {**variables, PIPELINE: first}
    known = pipelines_of(sql_dir)
    if named not in known:
        listed = ", ".join(repr(p) for p in known) if known else "none (it has no pipeline column)"
        hint = did_you_mean(str(named), known)  # the pipelines are listed already: only a near miss
        raise ConfigError(
            f"{where} pipeline = {shorten(repr(str(named)), 60)} is not a pipeline of {sql_dir / SEED} "
            f"(its pipelines: {listed}); "
            f"{WRITE} writes them from stages.csv." + (hint if hint.startswith(" Did you mean") else "")
        )
    return variables
