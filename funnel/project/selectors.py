"""`--select` and `--exclude` with dbt's grammar, parsed once into a value.

    name        the model            +name   and everything upstream
    name+       and everything downstream     @name   downstream, and everything upstream of that
    path:sql/staging   models under a folder  tag:daily   models with config(tags=['daily'])
    staging     every model in a top folder of sql/ (a layer)

A space separates alternatives (union); a comma joins criteria that must all hold
(intersection): `tag:daily,reporting` is the daily models in reporting.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from funnel.errors import ConfigError, ModelError, did_you_mean, shorten

if TYPE_CHECKING:
    from funnel.project.models import Graph

Method = Literal["name", "path", "tag"]
CRITERION = re.compile(r"(?P<at>@)?(?P<up>\+)?(?:(?P<method>path|tag):)?(?P<value>[A-Za-z0-9_./-]+?)(?P<down>\+)?")


@dataclass(frozen=True)
class Criterion:
    method: Method
    value: str
    upstream: bool = False
    downstream: bool = False
    at: bool = False  # dbt's @: downstream and the upstream of all of those


@dataclass(frozen=True)
class Selector:
    """Alternatives (any may match), each a set of criteria that must all match."""

    text: str
    alternatives: tuple[tuple[Criterion, ...], ...]
    option: str = "--select"  # the option it was given as: messages name it

    def __str__(self) -> str:
        return self.text


def parse(text: str, option: str = "--select") -> Selector:
    """`text` as a Selector; ConfigError naming the part that is not one."""
    alternatives = []
    for word in text.split():
        group = []
        for part in word.split(","):
            match = CRITERION.fullmatch(part)
            if not part or not match or (match["at"] and (match["up"] or match["down"])):
                raise ConfigError(
                    f"{option}: {shorten(part or word, 60)!r} is not a selector; use name, +name, name+, @name, "
                    "path:sql/folder, tag:x or a folder, separated by spaces (or) and commas (and)."
                )
            method: Method = match["method"] or "name"  # type: ignore[assignment]
            if method == "name" and "/" in match["value"]:
                raise ConfigError(f"{option}: {part!r} looks like a path; write path:{match['value']}.")
            group.append(Criterion(method, match["value"], bool(match["up"]), bool(match["down"]), bool(match["at"])))
        alternatives.append(tuple(group))
    if not alternatives:
        raise ConfigError(f"{option} is empty; name a model, 'name+', '+name', a folder, path: or tag:.")
    return Selector(text.strip(), tuple(alternatives), option)


def resolve(graph: Graph, select: Selector | None, exclude: Selector | None = None) -> list[str]:
    """The model names `select` picks minus those `exclude` picks, in run order."""
    chosen = set(graph.order) if select is None else _matching(graph, select)
    if exclude is not None:
        chosen -= _matching(graph, exclude)
    return [name for name in graph.order if name in chosen]


def _matching(graph: Graph, selector: Selector) -> set[str]:
    found: set[str] = set()
    for group in selector.alternatives:
        sets = [_criterion(graph, c, selector.option) for c in group]
        found |= set.intersection(*sets)
    return found


def _criterion(graph: Graph, c: Criterion, option: str) -> set[str]:
    base = _base(graph, c, option)
    out = set(base)
    for name in base:
        if c.upstream:
            out |= graph.upstream(name)
        if c.downstream or c.at:
            out |= graph.downstream(name)
    if c.at:
        for name in list(out):
            out |= graph.upstream(name)
    return out


def _base(graph: Graph, c: Criterion, option: str) -> set[str]:
    """The models `c` names before + and @; ModelError (naming `option`) if it names none."""
    models = graph.models
    if c.method == "tag":
        found = {n for n, m in models.items() if c.value in m.tags}
        if not found:
            tags = sorted({t for m in models.values() for t in m.tags})
            raise ModelError(f"{option}: no model has tag '{c.value}'." + did_you_mean(c.value, tags))
        return found
    if c.method == "path":
        wanted = Path(c.value.rstrip("/"))
        found = {n for n, m in models.items() if _under(m.path, wanted)}
        if not found:
            raise ModelError(f"{option}: no model under path '{c.value}'; paths start at the project, e.g. path:sql/staging.")
        return found
    if c.value in models:
        return {c.value}
    layers = {m.layer for m in models.values()}
    if c.value in layers:
        return {n for n, m in models.items() if m.layer == c.value}
    raise ModelError(f"{option}: no model or folder named '{c.value}'." + did_you_mean(c.value, [*models, *layers]))


def _under(path: Path, wanted: Path) -> bool:
    parts = path.parts
    tail = wanted.parts
    # a project-relative path (sql/staging) or one relative to sql/ (staging/x.sql) both match
    return any(parts[i : i + len(tail)] == tail for i in range(len(parts) - len(tail) + 1))
