"""Models from files: discovery, Jinja rendering, the dependency graph and `--select`.

A model is one `.sql` file in any folder under `sql/` (its layer is the top folder:
`sql/reporting/sales/x.sql` is in `reporting`), or a `.csv` seed under `sql/seeds/`; the
file stem is its name. `sql/tests/` holds data tests. Rendering records every `ref()` and
`source()`, which gives the graph; order is topological with ties broken by (layer, name),
so runs are repeatable. The materialization comes from `config()` or the folder's default.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from funnel.config import DEFAULT_MATERIALIZATIONS, IDENTIFIER, MATERIALIZATIONS, Materialization
from funnel.errors import ConfigError, ModelError, did_you_mean
from funnel.quoting import relation
from funnel.sources import SOURCE_NAME, SOURCES_BY_TABLE

LAYERS = ("seeds", "staging", "intermediate", "reporting")  # the usual ones, in run-order rank
TESTS_FOLDER, SEEDS_FOLDER = "tests", "seeds"
SELECTOR = re.compile(r"(\+?)([A-Za-z_][A-Za-z0-9_]*)(\+?)")  # use with fullmatch
RAW_SCHEMA = SOURCE_NAME


@dataclass(frozen=True)
class Model:
    name: str
    layer: str
    path: Path
    materialized: Materialization
    sql: str  # rendered; a single select
    refs: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    seed_columns: dict[str, str] = field(default_factory=dict)

    @property
    def is_seed(self) -> bool:
        return self.layer == "seeds"


@dataclass(frozen=True)
class Graph:
    """The models of a project, rendered for one schema, in run order."""

    models: dict[str, Model]
    order: tuple[str, ...]
    schema: str

    def upstream(self, name: str) -> set[str]:
        return _walk(name, lambda n: self.models[n].refs)

    def downstream(self, name: str) -> set[str]:
        children: dict[str, list[str]] = {n: [] for n in self.models}
        for model in self.models.values():
            for parent in model.refs:
                children[parent].append(model.name)
        return _walk(name, lambda n: children[n])

    def select(self, selector: str | None) -> list[str]:
        """Model names matching a selector, in run order.

        `name`, `name+` (and downstream), `+name` (and upstream), a layer name, or
        several of these separated by spaces or commas. None selects everything.
        """
        if not selector:
            return list(self.order)
        chosen: set[str] = set()
        layers = {m.layer for m in self.models.values()}
        for part in parse_selector(selector):
            prefix, name, suffix = SELECTOR.fullmatch(part).groups()  # type: ignore[union-attr]
            if name in layers and name not in self.models and not prefix and not suffix:
                chosen |= {m.name for m in self.models.values() if m.layer == name}
                continue
            if name not in self.models:
                raise ModelError(f"--select: no model or layer named '{name}'." + did_you_mean(name, [*self.models, *layers]))
            chosen.add(name)
            if prefix:
                chosen |= self.upstream(name)
            if suffix:
                chosen |= self.downstream(name)
        return [n for n in self.order if n in chosen]


def parse_selector(selector: str) -> list[str]:
    """Split and check a `--select` value; raise ConfigError for malformed parts."""
    parts = [p for p in re.split(r"[\s,]+", selector.strip()) if p]
    if not parts:
        raise ConfigError("--select is empty; name a model, 'name+', '+name' or a layer.")
    for part in parts:
        if not SELECTOR.fullmatch(part):
            raise ConfigError(f"--select: '{part}' is not a selector; use a model name, 'name+', '+name' or a layer.")
    return parts


def _walk(start: str, next_of: Any) -> set[str]:
    seen: set[str] = set()
    stack = list(next_of(start))
    while stack:
        node = stack.pop()
        if node not in seen:
            seen.add(node)
            stack.extend(next_of(node))
    return seen


def discover(sql_dir: Path) -> dict[str, tuple[str, Path]]:
    """Every model file: name -> (layer, path). Names must be unique across folders.

    Every `.sql` file under sql/ is a model except those in sql/tests/ (data tests); one
    that cannot be a model is an error, never silently ignored.
    """
    if not sql_dir.is_dir():
        raise ConfigError(f"{sql_dir}: no sql/ folder; a project keeps its models in sql/<folder>/.")
    found: dict[str, tuple[str, Path]] = {}
    seeds = sorted((sql_dir / SEEDS_FOLDER).glob("*.csv"))
    for path in seeds + sorted(sql_dir.rglob("*.sql")):
        parts = path.relative_to(sql_dir).parts
        if parts[0] == TESTS_FOLDER:
            continue
        if len(parts) == 1:
            raise ModelError(f"{path}: a model lives in a folder under sql/ (e.g. sql/reporting/); move it there.")
        if parts[0] == SEEDS_FOLDER and path.suffix == ".sql":
            raise ModelError(f"{path}: sql/seeds/ holds CSV seeds; move the model to another folder.")
        name = path.stem
        if not IDENTIFIER.fullmatch(name):
            raise ModelError(f"{path}: model file names must be plain identifiers (letters, digits, _).")
        if name in found:
            raise ModelError(f"{path}: model name '{name}' is also used by {found[name][1]}; rename one.")
        found[name] = (parts[0], path)
    if not found:
        raise ModelError(f"{sql_dir}: no models found; add .sql files in a folder such as sql/staging/.")
    return found


def load(sql_dir: Path, schema: str, materializations: dict[str, str] | None = None) -> Graph:
    """Render every model for `schema` and order them; raise ModelError naming the file.

    `materializations`: folder -> "view" | "table", the default of the models in it.
    """
    folders = DEFAULT_MATERIALIZATIONS if materializations is None else materializations
    files = discover(sql_dir)
    seed_types = _seed_types(sql_dir, [n for n, (layer, _) in files.items() if layer == SEEDS_FOLDER])
    models: dict[str, Model] = {}
    for name, (layer, path) in files.items():
        if layer == SEEDS_FOLDER:
            models[name] = Model(name, layer, path, "table", "", seed_columns=seed_types[name])
        else:
            models[name] = _model(name, layer, path, schema, files, folders.get(layer, "table"))
    return Graph(models=models, order=_order(models), schema=schema)


@dataclass(frozen=True)
class Rendered:
    sql: str
    refs: tuple[str, ...]
    sources: tuple[str, ...]
    settings: dict[str, Any]


def render(path: Path, schema: str, files: dict[str, tuple[str, Path]], name: str | None = None) -> Rendered:
    """Render one Jinja SQL file, recording its ref() and source() calls and its config()."""
    import jinja2

    refs: list[str] = []
    sources: list[str] = []
    settings: dict[str, Any] = {}

    def ref(target: str) -> str:
        if target not in files:
            raise ModelError(f"{path}: ref('{target}') names no model." + did_you_mean(target, list(files)))
        if target == name:
            raise ModelError(f"{path}: a model cannot ref() itself.")
        refs.append(target)
        return relation(schema, target)

    def source(source_name: str, table: str) -> str:
        if source_name != SOURCE_NAME or table not in SOURCES_BY_TABLE:
            choices = [f"{SOURCE_NAME}.{t}" for t in SOURCES_BY_TABLE]
            raise ModelError(
                f"{path}: source('{source_name}', '{table}') is not declared." + did_you_mean(f"{source_name}.{table}", choices)
            )
        sources.append(table)
        return relation(RAW_SCHEMA, table)

    def config(**kwargs: Any) -> str:
        settings.update(kwargs)
        return ""

    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)
    this = relation(schema, name) if name else ""
    try:
        template = env.from_string(path.read_text(encoding="utf-8"))
        sql = template.render(ref=ref, source=source, config=config, this=this)
    except jinja2.TemplateSyntaxError as e:
        raise ModelError(f"{path} line {e.lineno}: {e.message}") from None
    except jinja2.UndefinedError as e:
        raise ModelError(f"{path}: {e.message}; SQL files may use ref(), source(), config() and this.") from None
    except UnicodeDecodeError:
        raise ModelError(f"{path}: not UTF-8 text.") from None
    sql = sql.strip().rstrip(";").strip()
    if not sql:
        raise ModelError(f"{path}: the file is empty; write one select statement.")
    return Rendered(sql, tuple(dict.fromkeys(refs)), tuple(dict.fromkeys(sources)), settings)


def _model(name: str, layer: str, path: Path, schema: str, files: dict[str, tuple[str, Path]], default: str) -> Model:
    rendered = render(path, schema, files, name)
    settings = dict(rendered.settings)
    materialized = settings.pop("materialized", default)
    if materialized not in MATERIALIZATIONS:
        raise ModelError(f"{path}: materialized='{materialized}' is not one of {', '.join(MATERIALIZATIONS)}.")
    if settings:
        raise ModelError(f"{path}: unknown config key(s) {', '.join(settings)}; models accept materialized.")
    if layer != "staging" and rendered.sources:
        raise ModelError(f"{path}: only staging models read sources; ref() a staging model instead.")
    return Model(name, layer, path, materialized, rendered.sql, rendered.refs, rendered.sources)


def _seed_types(sql_dir: Path, names: list[str]) -> dict[str, dict[str, str]]:
    import tomllib

    path = sql_dir / "seeds" / "seeds.toml"
    if not names:
        return {}
    try:
        declared = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"{path}: missing; declare the columns of each seed there.") from None
    except tomllib.TOMLDecodeError as e:
        raise ModelError(f"{path}: invalid TOML: {e}.") from None
    out = {}
    for name in names:
        columns = declared.get(name, {}).get("columns")
        if not isinstance(columns, dict) or not columns:
            raise ModelError(f'{path}: declare [{name}] columns = {{ column = "TYPE", ... }} for sql/seeds/{name}.csv.')
        out[name] = columns
    extra = sorted(set(declared) - set(names))
    if extra:
        raise ModelError(f"{path}: [{extra[0]}] has no sql/seeds/{extra[0]}.csv.")
    return out


def _order(models: dict[str, Model]) -> tuple[str, ...]:
    from graphlib import CycleError, TopologicalSorter

    rank = {name: (LAYERS.index(m.layer) if m.layer in LAYERS else len(LAYERS), m.layer, name) for name, m in models.items()}
    sorter = TopologicalSorter({name: m.refs for name, m in models.items()})
    try:
        sorter.prepare()
    except CycleError as e:
        cycle = e.args[1]
        raise ModelError(
            f"{models[cycle[0]].path}: dependency cycle {' -> '.join(cycle)}; remove one of these ref() calls."
        ) from None
    order: list[str] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready(), key=rank.__getitem__)
        order.extend(ready)
        sorter.done(*ready)
    return tuple(order)
