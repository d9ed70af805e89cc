"""`funnel parity`: each exported table in PostgreSQL compared with the build, row for row.

PostgreSQL rows are read back with COPY and cast to the DuckDB column types, so the
comparison is exact and done by DuckDB (`except all` both ways), at any size.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from funnel import database
from funnel.errors import ExportError
from funnel.files import columns, scratch_folder, selected
from funnel.postgres import connect, conninfo, driver_message
from funnel.quoting import quote_ident, quote_literal, relation

if TYPE_CHECKING:
    from funnel.manifest import Manifest


@dataclass(frozen=True)
class TableParity:
    table: str
    matching: int
    missing: int  # in DuckDB, not in PostgreSQL
    unexpected: int  # in PostgreSQL, not in DuckDB
    examples: list[tuple[str, tuple[Any, ...]]]  # ("missing" | "unexpected", row)
    exists: bool = True

    @property
    def ok(self) -> bool:
        return self.exists and not self.missing and not self.unexpected


def parity(
    manifest: Manifest,
    dsn: str | None = None,
    select: str | None = None,
    examples: int = 5,
) -> list[TableParity]:
    """Compare each selected model in DuckDB with its exported table in PostgreSQL, row for row."""
    import psycopg

    env = manifest.env
    names = selected(manifest, select)
    results = []
    with (
        database.read(env) as duck,
        connect(conninfo(env, dsn)) as pg,
        scratch_folder(env) as tmp,
    ):
        for name in names:
            built = columns(duck, env.schema, name)
            exists = pg.execute("select to_regclass(%s) is not null", [relation(env.schema, name)]).fetchone()
            if not (exists and exists[0]):
                total = duck.execute(f"select count(*) from {relation(env.schema, name)}").fetchone()
                results.append(TableParity(name, 0, int(total[0]) if total else 0, 0, [], exists=False))
                continue
            path = tmp / f"{name}.csv"
            select_list = ", ".join(quote_ident(c) for c, _ in built)
            try:
                with (
                    pg.cursor() as cur,
                    path.open("wb") as f,
                    cur.copy(f"copy (select {select_list} from {relation(env.schema, name)}) to stdout (format csv)") as copy,
                ):
                    for data in copy:
                        f.write(data)
            except psycopg.Error as e:
                raise ExportError(f"PostgreSQL table {env.schema}.{name} cannot be read back ({driver_message(e)}).") from None
            results.append(_compare(duck, env.schema, name, built, path, examples))
    return results


def _compare(duck: Any, schema: str, name: str, columns: list[tuple[str, str]], path: Path, examples: int) -> TableParity:
    spec = ", ".join(f"{quote_literal(c)}: {quote_literal(t)}" for c, t in columns)
    pg_rows = f"read_csv({quote_literal(str(path))}, header = false, auto_detect = false, columns = {{{spec}}})"
    ours = relation(schema, name)
    total = duck.execute(f"select count(*) from {ours}").fetchone()[0]
    counts, shown = {}, []
    for kind, left, right in (("missing", ours, pg_rows), ("unexpected", pg_rows, ours)):
        # One pass per direction: the first rows that differ, each carrying how many differ.
        rows = duck.execute(
            f"select *, count(*) over () from (select * from {left} except all select * from {right}) limit {examples}"
        ).fetchall()
        counts[kind] = rows[0][-1] if rows else 0
        shown += [(kind, row[:-1]) for row in rows]
    return TableParity(name, total - counts["missing"], counts["missing"], counts["unexpected"], shown)
