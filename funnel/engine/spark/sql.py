"""The project's DuckDB SQL as Spark SQL: translated with sqlglot, checked, and named.

Models are written in DuckDB's dialect. sqlglot translates most of it; the few constructs
it translates wrongly or not at all are rewritten here, each one spelled out below, so that
a Spark build computes the same numbers as a DuckDB build (funnel parity checks it). What
cannot be translated is a ModelError naming the file and the construct, before Spark starts.

Relations: `"schema"."model"` becomes the Spark temporary view `schema__model`, so a build
leaves nothing in Spark's catalog.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

from funnel.errors import ModelError, first_line

if TYPE_CHECKING:
    from sqlglot import exp

    from funnel.project.manifest import Manifest

# Spark has no infinite timestamps; its range ends here, so these compare the same way
# with every timestamp Spark can hold.
TIMESTAMP_BOUNDS = {"-infinity": "0001-01-01 00:00:00", "infinity": "9999-12-31 23:59:59.999999"}
# DuckDB functions sqlglot passes through by name that Spark does not have.
DUCKDB_ONLY = {
    "epoch_ms", "epoch_us", "epoch_ns", "list_value", "list_transform", "list_filter", "list_reduce", "list_sort",
    "struct_pack", "strptime", "strftime", "regexp_full_match", "json_extract_string", "json_transform", "arg_max_null",
    "string_agg", "list", "histogram", "fsum", "kahan_sum", "favg", "bit_count", "time_bucket", "make_timestamp",
}  # fmt: skip
# Functions the rewrites below produce (pyspark.sql.functions does not list them all).
PRODUCED = {"percentile", "timestampdiff", "from_json"}


def view_name(schema: str, name: str) -> str:
    """The Spark temporary view that stands for `"schema"."name"`."""
    return f"{schema}__{name}"


def compiled_sql(manifest: Manifest) -> dict[str, str]:
    """Every model's and data test's Spark SQL, by name (seeds have none).

    `funnel compile` shows this; a Spark build runs it. Raises ModelError naming the file
    for SQL that Spark cannot run.
    """
    out = {}
    for name in manifest.graph.order:
        model = manifest.graph.models[name]
        if not model.is_seed:
            out[name] = translate(model.sql, model.path)
    for test in manifest.tests:
        out[test.name] = translate(test.sql, test.path)
    return out


@functools.lru_cache(maxsize=512)
def translate(sql: str, path: Path) -> str:
    """One DuckDB select as Spark SQL; ModelError naming `path` and the construct."""
    import sqlglot
    from sqlglot import ErrorLevel
    from sqlglot.errors import SqlglotError

    try:
        tree = sqlglot.parse_one(sql, read="duckdb")
        tree = tree.transform(_rewrite)
        _refuse_duckdb_only(tree, path)
        return tree.sql(dialect="spark", pretty=True, unsupported_level=ErrorLevel.RAISE)
    except SqlglotError as e:
        raise ModelError(
            f"{path}: cannot be translated to Spark SQL ({first_line(e)}); write it in SQL both engines share."
        ) from None
    except _Untranslatable as e:
        raise ModelError(f'{path}: {e}; Spark has no equivalent, so an env with engine = "spark" cannot run it.') from None


class _Untranslatable(Exception):
    pass


def _rewrite(node: exp.Expression) -> exp.Expression:
    from sqlglot import exp

    if isinstance(node, exp.Table) and node.args.get("db") is not None and not node.args.get("catalog"):
        view = exp.Table(this=exp.to_identifier(view_name(node.db, node.name), quoted=True))
        if node.alias:
            view.set("alias", node.args["alias"])
        elif not isinstance(node.parent, exp.Subquery):
            # `select x.col from x.tbl`-style qualified columns use the table name.
            view.set("alias", exp.TableAlias(this=exp.to_identifier(node.name, quoted=True)))
        return view
    if isinstance(node, exp.Cast) and node.this.is_string and node.this.name.lower() in TIMESTAMP_BOUNDS:
        if node.to.this in (exp.DataType.Type.TIMESTAMP, exp.DataType.Type.TIMESTAMPNTZ):
            bound = TIMESTAMP_BOUNDS[node.this.name.lower()]
            return exp.Cast(this=exp.Literal.string(bound), to=exp.DataType.build("TIMESTAMP_NTZ", dialect="spark"))
        if node.to.is_type("date", "timestamptz"):
            raise _Untranslatable(f"'{node.this.name}'::{node.to.sql()} (Spark has no infinite dates)")
    if isinstance(node, exp.TimeToUnix):  # DuckDB epoch(): seconds as a DOUBLE, fractions kept
        return _epoch(node.this)
    if isinstance(node, exp.PercentileCont) and node.args.get("expression") is not None:
        # quantile_cont(x, q): Spark's percentile() interpolates linearly between the same two rows.
        return exp.Anonymous(this="PERCENTILE", expressions=[node.this, node.expression])
    if isinstance(node, exp.JSONExtract) and node.expression.sql(dialect="duckdb").strip("'") == "$[*]":
        # json_extract(x, '$[*]'): the elements of a JSON array, each as JSON text.
        return exp.Anonymous(this="FROM_JSON", expressions=[node.this, exp.Literal.string("array<string>")])
    return node


def _epoch(arg: exp.Expression) -> exp.Expression:
    """epoch(a - b) of two timestamps: (microseconds between them) / 1e6, as DuckDB computes it."""
    from sqlglot import exp

    inner = arg.unnest()
    if not isinstance(inner, exp.Sub):
        raise _Untranslatable(f"epoch({arg.sql(dialect='duckdb')}) (only epoch(a - b) of two timestamps is translated)")
    micros = exp.Anonymous(this="TIMESTAMPDIFF", expressions=[exp.var("MICROSECOND"), inner.expression, inner.this])
    seconds = exp.Div(this=exp.Cast(this=micros, to=exp.DataType.build("DOUBLE")), expression=exp.Literal.number(1000000))
    return exp.Paren(this=seconds)


def _refuse_duckdb_only(tree: exp.Expression, path: Path) -> None:
    from sqlglot import exp

    syntax = (exp.Cast, exp.TryCast, exp.Case, exp.If, exp.Filter, exp.Window, exp.Distinct, exp.Star, exp.Extract)
    for node in tree.find_all(exp.Func):
        if isinstance(node, syntax):
            continue
        # The name the Spark SQL will call: sqlglot may keep a DuckDB function under its own name.
        head = node.sql(dialect="spark").split("(", 1)[0].strip()
        name = head.lower()
        if not name.replace("_", "").isalnum() or name in PRODUCED:
            continue
        if name in DUCKDB_ONLY or not _spark_has(name):
            raise _Untranslatable(f"{node.name if isinstance(node, exp.Anonymous) else head.lower()}() is DuckDB SQL")
    for cast in tree.find_all(exp.Cast):
        if cast.to.is_type("json", "hugeint", "uhugeint", "union", "map", "interval"):
            raise _Untranslatable(f"a cast to {cast.to.sql(dialect='duckdb')}")


@functools.cache
def _spark_has(name: str) -> bool:
    """Whether Spark has a built-in of this name (pyspark mirrors Spark's built-ins in Python)."""
    from pyspark.sql import functions

    return hasattr(functions, name) or hasattr(functions, f"{name}_")
