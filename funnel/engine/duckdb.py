"""The DuckDB engine: a build in a temporary DuckDB file beside the env's database.

A full build starts from an empty file, an incremental one from a copy of the published
build (what the plan replaces is dropped first, so the file does not grow from one build
to the next). Publishing renames the file over the env's database (funnel/engine/database.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from funnel import workdir
from funnel.engine import database
from funnel.engine.loading import CsvLoad, load_csvs
from funnel.errors import FunnelError, ModelError, first_line
from funnel.project import checks, models
from funnel.quoting import quote_ident, relation

if TYPE_CHECKING:
    from pathlib import Path

    import duckdb

    from funnel.build.engine import OnLoaded
    from funnel.build.plan import Plan
    from funnel.project.manifest import Manifest
    from funnel.project.sources import Source


class DuckDBEngine:
    name = "duckdb"
    incremental = True

    def prepare(self, manifest: Manifest) -> None:
        pass  # everything DuckDB could refuse is refused by the compiled project already

    @contextlib.contextmanager
    def start(self, manifest: Manifest, plan: Plan) -> Iterator[DuckDBWork]:
        import duckdb

        env = manifest.env
        temp = workdir.temp_path(env.database)
        try:
            if not plan.full:
                database.copy_committed(env.database, temp)
            work = DuckDBWork(manifest, temp, database.connect(temp, env))
            try:
                if not plan.full:
                    work.make_room(plan)
                work.con.execute(f"create schema if not exists {quote_ident(env.schema)}")
                yield work
            finally:
                work.close()
        except duckdb.Error as e:
            # Not the data's fault (a full disk, an I/O error, memory): say what DuckDB said.
            raise FunnelError(
                f"{temp.parent}: DuckDB failed while building env '{env.name}' ({first_line(e)}); "
                "the last good build is unchanged. Check free disk space there and memory_limit, then rebuild."
            ) from None
        finally:
            workdir.remove_temp(temp)


class DuckDBWork:
    """A build in the temporary file `temp`, through the read-write connection `con`."""

    def __init__(self, manifest: Manifest, temp: Path, con: duckdb.DuckDBPyConnection) -> None:
        self.manifest, self.temp, self.con = manifest, temp, con
        self.record_fields: dict[str, Any] = {}
        self._open = True

    def close(self) -> None:
        if self._open:
            self._open = False
            self.con.close()

    def make_room(self, plan: Plan) -> None:
        """In a copied build, drop what is about to be replaced and checkpoint: the new data
        then reuses the freed blocks."""
        con, manifest = self.con, self.manifest
        kinds = dict(
            con.execute("select table_schema || '.' || table_name, table_type from information_schema.tables").fetchall()
        )
        by_table = {s.table: s for s in manifest.sources}
        doomed = [(by_table[t].source_name, t) for t in plan.names("source", "load")]
        doomed += [(manifest.env.schema, n) for n in plan.names("model", "run")]
        for schema, name in doomed:
            kind = kinds.get(f"{schema}.{name}")
            if kind:
                con.execute(f"drop {'view' if kind == 'VIEW' else 'table'} {relation(schema, name)}")
        con.execute("checkpoint")

    def load_sources(self, sources: Sequence[Source], on_loaded: OnLoaded) -> None:
        folder = self.manifest.env.export_folder()
        for schema in sorted({s.source_name for s in sources}):
            self.con.execute(f"create schema if not exists {quote_ident(schema)}")
        loads = [
            CsvLoad(
                folder / s.file_name,
                relation(s.source_name, s.table),
                s.columns,
                s.timestamp_format,
                s.conditional,
                s.optional,
                s.patterns,
                s.optional_columns,
            )
            for s in sources
        ]
        by_target = {load.target: s for load, s in zip(loads, sources, strict=True)}
        load_csvs(self.con, loads, lambda load, rows, seconds: on_loaded(by_target[load.target], rows, seconds))

    def run_model(self, model: models.Model) -> int | None:
        import duckdb

        target = relation(self.manifest.env.schema, model.name)
        try:
            if model.is_seed:
                seed = CsvLoad(model.path, target, model.seed_columns, optional_columns=model.seed_optional)
                (rows,) = load_csvs(self.con, [seed])
                return rows
            if model.materialized == "view":
                self.con.execute(f"create or replace view {target} as {model.sql}")
                return None
            row = self.con.execute(f"create or replace table {target} as {model.sql}").fetchone()
        except duckdb.Error as e:
            if database.is_machine_fault(e):
                raise  # a full disk or too little memory is not the model's fault: start() says so
            raise ModelError(models.describe_sql_error(model, str(e))) from None
        return int(row[0]) if row else 0

    def run_tests(self, tests: Sequence[checks.DataTest], input_rows: int | None) -> list[checks.TestResult]:
        return checks.run(self.con, list(tests), input_rows=input_rows)

    def failing_rows(self, failed: list[checks.TestResult], limit: int = 5) -> list[checks.FailingRows]:
        return checks.failing_rows(self.con, failed, limit)

    def finish(self, write_record: Callable[[duckdb.DuckDBPyConnection], None]) -> None:
        write_record(self.con)
        self.con.execute("checkpoint")
        self.close()

    def publish(self) -> None:
        database.commit(self.temp, self.manifest.env.database)
