"""The Engine protocol: what the one build loop (funnel/build/runner.py) asks of an engine.

The runner plans, takes the lock, and then walks every engine through the same steps:

    with engine.start(manifest, plan) as work:   # a private workspace; nothing visible yet
        work.load_sources(...)                   # the plan's sources, read strictly
        work.run_model(model)                    # each model the plan runs, in order
        work.run_tests(tests, input_rows)        # counts of failing rows
        work.failing_rows(failed)                # when an error test failed (then: stop)
        work.finish(write_record)                # the readers' DuckDB file, with the build record
        work.publish()                           # all-or-nothing, signals held back

Leaving the `with` block by an exception discards the workspace: the published build is
exactly as it was. An engine's machine faults (a full disk, too little memory, a lost
executor) leave the block as one FunnelError saying what the engine said.

Adding an engine is one module under funnel/engine/ with a class of this shape, and a line
in `engine_for`. Its capability flags tell the runner what it can do:

    incremental  it can start from the published build and redo only what changed (DuckDB);
                 without it every build is a full one, and --select is refused (Spark)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import duckdb

    from funnel.build.plan import Plan
    from funnel.project.checks import DataTest, FailingRows, TestResult
    from funnel.project.config import Environment
    from funnel.project.manifest import Manifest
    from funnel.project.models import Model
    from funnel.project.sources import Source

OnLoaded = Callable[["Source", int, float], None]  # a source, its rows, the seconds it took


class Work(Protocol):
    """One build in progress in its engine's workspace."""

    record_fields: dict[str, Any]  # what the build record says of the engine (Spark: its warehouse, build id)

    def load_sources(self, sources: Sequence[Source], on_loaded: OnLoaded) -> None:
        """Load `sources` (SourceError naming file, line and column on a bad value)."""

    def run_model(self, model: Model) -> int | None:
        """Create `model` (ModelError naming its file); the rows of a table or seed, None for a view."""

    def run_tests(self, tests: Sequence[DataTest], input_rows: int | None) -> list[TestResult]:
        """Each test's count of failing rows (a broken query is a result with an error), in order."""

    def failing_rows(self, failed: list[TestResult], limit: int = 5) -> list[FailingRows]:
        """The first `limit` rows breaking each failed test (what `funnel test --failures` shows)."""

    def finish(self, write_record: Callable[[duckdb.DuckDBPyConnection], None]) -> None:
        """Complete the DuckDB file the env's readers will open, calling `write_record` on it."""

    def publish(self) -> None:
        """Make the finished build the env's published one, atomically (the runner holds signals back)."""


class Engine(Protocol):
    name: str
    incremental: bool

    def prepare(self, manifest: Manifest) -> None:
        """Checks that need no lock and no engine running (Spark: the SQL translates); raises FunnelError."""

    def start(self, manifest: Manifest, plan: Plan) -> AbstractContextManager[Work]:
        """A workspace for carrying out `plan`, removed when the block ends."""


def engine_for(env: Environment) -> Engine:
    """The engine `env` builds on (its `engine` in environments.toml)."""
    if env.engine == "spark":
        from funnel.engine.spark.engine import SparkEngine

        return SparkEngine()
    from funnel.engine.duckdb import DuckDBEngine

    return DuckDBEngine()
