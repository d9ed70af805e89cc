"""The compiled project (rendered models, run order, data tests), cached between runs.

Rendering needs Jinja, and importing it costs more than a small build's SQL. Like dbt's
partial parsing, the result is saved beside the environment's database and reused while
no file under sql/ has changed (the key is a hash of every file's name and bytes).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path

from funnel import __version__, checks, models

SUFFIXES = (".sql", ".csv", ".toml")


def compile_project(sql_dir: Path, schema: str, cache_dir: Path | None = None) -> tuple[models.Project, list[checks.DataTest]]:
    """Models and data tests of `sql_dir` rendered for `schema`, from the cache when fresh."""
    key = _key(sql_dir, schema)
    cache = cache_dir / f".funnel-manifest-{schema}.json" if cache_dir else None
    if cache is not None:
        cached = _read(cache, key)
        if cached is not None:
            return cached
    dag = models.load(sql_dir, schema)
    tests = checks.collect(sql_dir, dag)
    if cache is not None:
        _write(cache, key, dag, tests)
    return dag, tests


def _key(sql_dir: Path, schema: str) -> str:
    digest = hashlib.sha256(f"{__version__}\0{schema}\0{sql_dir}".encode())
    for path in sorted(p for p in sql_dir.rglob("*") if p.suffix in SUFFIXES and p.is_file()):
        digest.update(str(path.relative_to(sql_dir)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def _read(cache: Path, key: str) -> tuple[models.Project, list[checks.DataTest]] | None:
    try:
        data = json.loads(cache.read_text(encoding="utf-8"))
        if data.get("key") != key:
            return None
        dag = models.Project(
            models={
                m["name"]: models.Model(
                    **{**m, "path": Path(m["path"]), "refs": tuple(m["refs"]), "sources": tuple(m["sources"])}
                )
                for m in data["models"]
            },
            order=tuple(data["order"]),
            schema=data["schema"],
        )
        tests = [checks.DataTest(**{**t, "path": Path(t["path"])}) for t in data["tests"]]
        return dag, tests
    except (OSError, ValueError, KeyError, TypeError):
        return None  # missing or unreadable: compile afresh


def _write(cache: Path, key: str, dag: models.Project, tests: list[checks.DataTest]) -> None:
    data = {
        "key": key,
        "schema": dag.schema,
        "order": list(dag.order),
        "models": [asdict(m) for m in dag.models.values()],
        "tests": [asdict(t) for t in tests],
    }
    temp = cache.with_name(f"{cache.name}.{os.getpid()}.part")
    # A cache that cannot be written only costs the next run its speed.
    with contextlib.suppress(OSError):
        cache.parent.mkdir(parents=True, exist_ok=True)
        temp.write_text(json.dumps(data, default=str), encoding="utf-8")
        os.replace(temp, cache)
