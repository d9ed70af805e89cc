"""The compiled project: one value that every command works from.

`compile(config, env)` renders every model and data test of the project for one
environment and orders them; build, test, models, show and export all take the resulting
`Manifest`, so the project is compiled once per command and nowhere else.

Rendering needs Jinja, and importing it costs more than a small build's SQL. Like dbt's
partial parsing, the result is saved beside the environment's database and reused while
no file under sql/ has changed (the key is a hash of every file's name and bytes).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from funnel import __version__, atomic, workdir
from funnel.project import checks, models, steps
from funnel.project.config import Config, Environment
from funnel.project.sources import SOURCES, Source, declared

SUFFIXES = (".sql", ".csv", ".toml")
CACHE_FORMAT = 5  # raised whenever what the cache holds changes (2: the sources a SQL test reads, 3: a model's vars,
# 4: no graph whose names collide in case, 5: a seed's optional columns)


@dataclass(frozen=True)
class Manifest:
    """A project compiled for one environment: sources, models in run order, data tests."""

    config: Config
    env: Environment
    graph: models.Graph
    tests: tuple[checks.DataTest, ...]
    sources: tuple[Source, ...] = SOURCES  # sql/sources.toml, or the six Pipedrive files

    @property
    def vars(self) -> dict[str, Any]:
        return self.graph.variables


def compile(config: Config, env: Environment, given_vars: dict[str, Any] | None = None) -> Manifest:
    """The project under `config.root` rendered for `env` (and `--var`s), from the cache when fresh."""
    sql_dir = config.sql_dir
    folders = config.materializations
    where = config.var_origin(env, given_vars, steps.PIPELINE)
    variables = steps.with_pipeline(config.variables(env, given_vars), sql_dir, where)  # the var pipeline's default
    key = _key(sql_dir, env.schema, folders, variables)
    cache = workdir.manifest_cache(env)
    cached = _read(cache, key)
    sources = declared(sql_dir)
    if cached is None:
        graph = models.load(sql_dir, env.schema, folders, variables, sources)
        tests = tuple(checks.collect(sql_dir, graph, sources))
        _write(cache, key, graph, tests)
    else:
        graph, tests = cached
    return Manifest(config, env, graph, tests, sources)


def _key(sql_dir: Path, schema: str, folders: dict[str, str], variables: dict[str, Any]) -> str:
    settings = json.dumps([sorted(folders.items()), variables], sort_keys=True)
    digest = hashlib.sha256(f"{__version__}\0{CACHE_FORMAT}\0{schema}\0{sql_dir}\0{settings}".encode())
    for path in sorted(p for p in sql_dir.rglob("*") if p.suffix in SUFFIXES and p.is_file()):
        digest.update(str(path.relative_to(sql_dir)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def _read(cache: Path, key: str) -> tuple[models.Graph, tuple[checks.DataTest, ...]] | None:
    try:
        data = json.loads(cache.read_text(encoding="utf-8"))
        if data.get("key") != key:
            return None
        graph = models.Graph(
            models={
                m["name"]: models.Model(
                    **{
                        **m,
                        "path": Path(m["path"]),
                        "refs": tuple(m["refs"]),
                        "sources": tuple(m["sources"]),
                        "tags": tuple(m["tags"]),
                        "vars": tuple(m["vars"]),
                        "seed_optional": tuple(m["seed_optional"]),
                    }
                )
                for m in data["models"]
            },
            order=tuple(data["order"]),
            schema=data["schema"],
            variables=data["variables"],
        )
        tests = tuple(
            checks.DataTest(
                **{**t, "path": Path(t["path"]), "depends_on": tuple(t["depends_on"]), "sources": tuple(t["sources"])}
            )
            for t in data["tests"]
        )
        return graph, tests
    except (OSError, ValueError, KeyError, TypeError):
        return None  # missing or unreadable: compile afresh


def _write(cache: Path, key: str, graph: models.Graph, tests: tuple[checks.DataTest, ...]) -> None:
    data = {
        "key": key,
        "schema": graph.schema,
        "order": list(graph.order),
        "variables": graph.variables,
        "models": [asdict(m) for m in graph.models.values()],
        "tests": [asdict(t) for t in tests],
    }
    # A cache that cannot be written only costs the next run its speed; nor need it survive a power cut.
    with contextlib.suppress(OSError):
        cache.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_text(cache, json.dumps(data, default=str), durable=False)
