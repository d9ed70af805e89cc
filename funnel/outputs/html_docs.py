"""`funnel docs`: the project as one static page, like `dbt docs`.

The lineage of sources, seeds, models and data tests (an inline SVG laid out by layer),
then every source and model: its description, columns with their types and descriptions,
dependencies, data tests with the last build's results, and the compiled SQL.

Where the words come from, beside each model:
- a model's description is the block of `--` comment lines that opens its .sql file;
- a seed's is the block of `#` comment lines right above its table in seeds.toml;
- columns are described in a `columns.toml` in the model's folder, one table per model:
      [rep_sales_funnel_monthly]
      month = "First day of the calendar month"
Column types come from the last build's information_schema (sources and seeds: as declared
when there is no build). Nothing here needs plotly.
"""

from __future__ import annotations

import tomllib
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from funnel.build import record as records
from funnel.engine import database
from funnel.errors import BuildMissing, FunnelError, ModelError, did_you_mean
from funnel.outputs.html import esc, page, table, write_atomic
from funnel.project.models import LAYERS, RAW_SCHEMA, SEEDS_FOLDER, Model

if TYPE_CHECKING:
    from funnel.project.checks import DataTest
    from funnel.project.manifest import Manifest

COLUMNS_FILE = "columns.toml"
NODE_WIDTH, NODE_HEIGHT, COLUMN_GAP, ROW_GAP, LABEL_CHARS = 200, 24, 50, 8, 29
KIND_COLOUR = {"source": "#e8f1e4", "seed": "#fdf1d6", "model": "#e3ecf7", "test": "#f3e8f5"}


def model_description(model: Model) -> str:
    """The opening comment block of a model's file (seeds: of its table in seeds.toml)."""
    try:
        lines = model.path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return ""
    if model.is_seed:
        return _seed_description(model.path.parent / "seeds.toml", model.name)
    block = []
    for line in lines:
        if not line.startswith("--"):
            break
        block.append(line[2:].strip())
    return " ".join(block).strip()


def _seed_description(seeds_toml: Path, name: str) -> str:
    try:
        lines = seeds_toml.read_text(encoding="utf-8").splitlines()
    except OSError:
        return ""
    block: list[str] = []
    for line in lines:
        if line.strip() == f"[{name}]":
            return " ".join(block).strip()
        block = [*block, line.lstrip("#").strip()] if line.startswith("#") else []
    return ""


def column_docs(manifest: Manifest) -> dict[str, dict[str, str]]:
    """model -> column -> description, from every columns.toml of the project.

    Strict like the rest of the project: a table that names no model of its folder, or a
    description that is not text, is a ModelError naming the file and the key.
    """
    by_folder: dict[Path, set[str]] = defaultdict(set)
    for model in manifest.graph.models.values():
        by_folder[model.path.parent].add(model.name)
    docs: dict[str, dict[str, str]] = {}
    for path in sorted(manifest.config.sql_dir.rglob(COLUMNS_FILE)):
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise ModelError(f"{path}: invalid TOML: {e}; fix it (see funnel/outputs/html_docs.py for the format).") from None
        here = by_folder.get(path.parent, set())
        for name, columns in data.items():
            if name not in here:
                raise ModelError(f"{path}: [{name}] is no model in this folder." + did_you_mean(name, sorted(here)))
            if not isinstance(columns, dict) or not all(isinstance(v, str) for v in columns.values()):
                raise ModelError(f'{path}: [{name}] takes column = "description" lines only.')
            docs[name] = dict(columns)
    return docs


@dataclass(frozen=True)
class Build:
    """What the last build says: column types per relation and each test's result."""

    columns: dict[tuple[str, str], list[tuple[str, str]]]  # (schema, table) -> [(column, type)]
    record: records.BuildRecord  # empty when the build records nothing about itself


def _last_build(manifest: Manifest) -> Build | None:

    try:
        with database.read(manifest.env) as con:
            rows = con.execute(
                "select table_schema, table_name, column_name, data_type from information_schema.columns "
                "where table_schema in (?, ?) order by table_schema, table_name, ordinal_position",
                [manifest.env.schema, RAW_SCHEMA],
            ).fetchall()
            # A build without _funnel.build_info: its types still help.
            found = records.read(con) or records.BuildRecord()
    except BuildMissing:
        return None
    columns: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
    for schema, name, column, kind in rows:
        columns[(schema, name)].append((column, kind))
    return Build(dict(columns), found)


@dataclass(frozen=True)
class Coverage:
    """What the docs do not yet say: what `funnel docs` lists after writing the page."""

    models: list[Model]  # without a description (the opening comment block; a seed's in seeds.toml)
    columns: dict[str, list[str]]  # reporting model -> its built columns that no columns.toml describes

    @property
    def complete(self) -> bool:
        return not self.models and not self.columns


def coverage(manifest: Manifest, build: Build | None = None) -> Coverage:
    """Models without a description, and the columns of reporting models (what a reader is
    handed) without one; columns as the last build has them, none when there is no build."""
    build = build if build is not None else _last_build(manifest)
    described = column_docs(manifest)
    models = [manifest.graph.models[n] for n in manifest.graph.order if not model_description(manifest.graph.models[n])]
    columns: dict[str, list[str]] = {}
    for name in manifest.graph.order:
        if manifest.graph.models[name].layer != "reporting" or build is None:
            continue
        built = build.columns.get((manifest.env.schema, name), [])
        missing = [c for c, _ in built if c not in described.get(name, {})]
        if missing:
            columns[name] = missing
    return Coverage(models, columns)


def write_docs(manifest: Manifest, out: Path) -> Path:
    """Write `out`/index.html and return its path."""
    if out.exists() and not out.is_dir():
        raise FunnelError(f"--out {out}: is a file; funnel docs writes a folder (index.html inside).")
    return write_atomic(out / "index.html", render(manifest))


def render(manifest: Manifest, build: Build | None = None) -> str:
    """The whole page for `manifest` (the last build read when `build` is None)."""
    build = build if build is not None else _last_build(manifest)
    documented = column_docs(manifest)
    graph, env = manifest.graph, manifest.env
    results = build.record.test_results if build else {}
    if build is None:
        state = f"No build of env '{env.name}' yet: column types of models are unknown (run funnel build --env {env.name})."
    else:
        built_at = build.record.built_at or "time unknown"
        state = f"Column types and test results from the last build of env '{env.name}' ({built_at})."
    tests_of: dict[str, list[DataTest]] = defaultdict(list)
    for test in manifest.tests:
        for name in test.depends_on:
            tests_of[name].append(test)
    used_by: dict[str, list[str]] = defaultdict(list)
    for name in graph.order:
        for parent in graph.models[name].refs:
            used_by[parent].append(name)
    parts = [
        f"<h1>funnel project · env {esc(env.name)}</h1>",
        f"<p class='note'>{esc(state)}</p>",
        "<nav>"
        + "".join(
            f"<a href='#{a}'>{t}</a>"
            for a, t in (("lineage", "Lineage"), ("sources", "Sources"), ("models", "Models"), ("tests", "Data tests"))
        )
        + "</nav>",
        "<section id='lineage'><h2>Lineage</h2><p class='note'>Sources, seeds and models by layer, left to right, "
        "then the data tests (grouped by what they read). Click a box to jump to it.</p>",
        lineage_svg(manifest),
        "</section>",
        "<section id='sources'><h2>Sources</h2>",
    ]
    for source in manifest.sources:
        rows_loaded = build.record.source_rows.get(source.table) if build else None
        types = dict(build.columns.get((RAW_SCHEMA, source.table), [])) if build else {}
        columns = [(c, types.get(c, declared)) for c, declared in source.columns.items()]
        parts.append(
            f"<h3 id='source-{esc(source.table)}'>{RAW_SCHEMA}.{esc(source.table)}</h3>"
            f"<p class='note'>{esc(source.file_name)} of the export, read with these declared types"
            + (f"; {rows_loaded:,} rows in the last build" if isinstance(rows_loaded, int) else "")
            + ". Used by "
            + ", ".join(_link(m) for m in graph.order if source.table in graph.models[m].sources)
            + ".</p>"
            + table(("column", "type"), columns)
        )
    parts.append("</section><section id='models'><h2>Models</h2>")
    for name in graph.order:
        model = graph.models[name]
        parts.append(_model_part(manifest, model, documented.get(name, {}), build, tests_of[name], used_by[name], results))
    parts.append("</section><section id='tests'><h2>Data tests</h2>")
    rows = [(t.name, t.severity, ", ".join(t.depends_on), *_result(results.get(t.name)), t.description) for t in manifest.tests]
    parts.append(
        table(
            ("test", "severity", "reads", "last result", "failing rows", "description"),
            rows,
            "tests-table",
            {"failing rows": "n"},
        )
    )
    parts.append("</section>")
    return page(f"funnel docs · {env.name}", "\n".join(parts))


def _model_part(
    manifest: Manifest,
    model: Model,
    documented: dict[str, str],
    build: Build | None,
    tests: list[DataTest],
    used_by: list[str],
    results: dict[str, Any],
) -> str:
    where = model.path.relative_to(manifest.config.root) if model.path.is_relative_to(manifest.config.root) else model.path
    kind = "seed" if model.is_seed else model.materialized
    description = model_description(model)
    upstream = [_link(r) for r in model.refs] + [f"<a href='#source-{esc(s)}'>{RAW_SCHEMA}.{esc(s)}</a>" for s in model.sources]
    built = build.columns.get((manifest.env.schema, model.name)) if build else None
    if built is not None:
        columns = [(c, t, documented.get(c, "")) for c, t in built]
        columns += [(c, "not in the build", d) for c, d in documented.items() if c not in dict(built)]
    elif model.is_seed:
        columns = [(c, t, documented.get(c, "")) for c, t in model.seed_columns.items()]
    else:
        columns = [(c, "unknown: not built", d) for c, d in documented.items()]
    test_rows = [(t.name, t.severity, *_result(results.get(t.name))) for t in tests]
    return (
        f"<article id='model-{esc(model.name)}'><h3>{esc(model.name)}</h3>"
        f"<p class='note'>{esc(model.layer)} · {esc(kind)} · {esc(where)}</p>"
        f"<p>{esc(description) if description else '<em>No description: start the file with -- comment lines.</em>'}</p>"
        f"<p>Depends on: {', '.join(upstream) or '—'} · Used by: {', '.join(_link(u) for u in used_by) or '—'}</p>"
        + (table(("column", "type", "description"), columns) if columns else "<p class='note'>No columns known.</p>")
        + (
            table(("test", "severity", "last result", "failing rows"), test_rows, kinds={"failing rows": "n"})
            if test_rows
            else ""
        )
        + (f"<details><summary>Compiled SQL</summary><pre><code>{esc(model.sql)}</code></pre></details>" if model.sql else "")
        + "</article>"
    )


def _result(recorded: dict[str, Any] | None) -> tuple[str, int | None]:
    if not recorded:
        return "not run", None
    if recorded.get("error"):
        return "ERROR", None
    return ("PASS" if not recorded.get("failures") else "failed"), recorded.get("failures")


def _link(name: str) -> str:
    return f"<a href='#model-{esc(name)}'>{esc(name)}</a>"


def lineage_svg(manifest: Manifest) -> str:
    """Sources, seeds, models and test groups as boxes in columns (by layer), edges as curves."""
    graph = manifest.graph
    columns: dict[int, list[str]] = defaultdict(list)
    parents: dict[str, list[str]] = {}
    labels: dict[str, tuple[str, str, str]] = {}  # node -> (label, kind, link)
    for source in manifest.sources:
        node = f"source:{source.table}"
        columns[0].append(node)
        labels[node] = (f"{RAW_SCHEMA}.{source.table}", "source", f"#source-{source.table}")
    # Seeds are inputs like the sources: they share the first column.
    layers = sorted(
        {m.layer for m in graph.models.values()} - {SEEDS_FOLDER},
        key=lambda x: (LAYERS.index(x) if x in LAYERS else len(LAYERS), x),
    )
    rank = {SEEDS_FOLDER: 0, **{layer: 1 + i for i, layer in enumerate(layers)}}
    for name in graph.order:
        model = graph.models[name]
        columns[rank[model.layer]].append(name)
        parents[name] = [*(f"source:{s}" for s in model.sources), *model.refs]
        labels[name] = (name, "seed" if model.layer == SEEDS_FOLDER else "model", f"#model-{name}")
    groups: dict[tuple[str, ...], list[str]] = defaultdict(list)
    for test in manifest.tests:
        groups[test.depends_on].append(test.name)
    last = len(layers) + 1
    for reads, names in groups.items():
        node = "tests:" + ",".join(reads)
        columns[last].append(node)
        parents[node] = [r for r in reads if r in graph.models]
        label = names[0] if len(names) == 1 else f"{len(names)} tests on {reads[0]}" + (" …" if len(reads) > 1 else "")
        labels[node] = (label, "test", "#tests")
    position: dict[str, tuple[float, float]] = {}
    for column in sorted(columns):
        x = float(column * (NODE_WIDTH + COLUMN_GAP))

        def weight(node: str) -> tuple[float, str]:
            ys = [position[p][1] for p in parents.get(node, []) if p in position]
            return (sum(ys) / len(ys) if ys else 0.0, node)

        for row, node in enumerate(sorted(columns[column], key=weight)):
            position[node] = (x, float(row * (NODE_HEIGHT + ROW_GAP)))
    width = (last + 1) * (NODE_WIDTH + COLUMN_GAP)
    height = max(y for _, y in position.values()) + NODE_HEIGHT + 2
    edges, boxes = [], []
    for node, ups in parents.items():
        x2, y2 = position[node]
        for parent in ups:
            x1, y1 = position[parent]
            x1, y1, y2c = x1 + NODE_WIDTH, y1 + NODE_HEIGHT / 2, y2 + NODE_HEIGHT / 2
            middle = (x1 + x2) / 2
            edges.append(f'<path d="M{x1:.0f},{y1:.0f} C{middle:.0f},{y1:.0f} {middle:.0f},{y2c:.0f} {x2:.0f},{y2c:.0f}"/>')
    for node, (x, y) in position.items():
        label, kind, link = labels[node]
        shown = label if len(label) <= LABEL_CHARS else label[: LABEL_CHARS - 1] + "…"
        boxes.append(
            f'<a href="{esc(link)}" class="node {kind}"><title>{esc(label)}</title>'
            f'<rect x="{x:.0f}" y="{y:.0f}" width="{NODE_WIDTH}" height="{NODE_HEIGHT}" rx="4" '
            f'fill="{KIND_COLOUR[kind]}" stroke="#7b8794"/>'
            f'<text x="{x + 8:.0f}" y="{y + 16:.0f}">{esc(shown)}</text></a>'
        )
    return (
        f'<div class="scroll" style="max-height:none; max-width:100%"><svg id="lineage-graph" '
        f'width="{width}" height="{height:.0f}" font-size="12" font-family="system-ui, sans-serif">'
        f'<g fill="none" stroke="#9aa5b1" stroke-width="1">{"".join(edges)}</g>{"".join(boxes)}</svg></div>'
    )
