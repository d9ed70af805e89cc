"""The Python API: one project and env, its plan, build, tests and models, for notebooks and scripts.

    >>> from funnel import Project
    >>> project = Project("path/to/project", env="dev")
    >>> project.build(vars={"stage_entry": "every"})
    >>> rows = project.df("rep_sales_funnel_monthly", month="2024-02")

The env's `engine` (environments.toml) decides where a build runs: a Spark env builds on
Spark, a DuckDB env on DuckDB, whoever calls. Nothing here prints; errors are FunnelErrors,
a file the system refuses too (as the CLI says it: `<path>: <reason>; check the path ...`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from funnel import names
from funnel.errors import from_os_error

if TYPE_CHECKING:
    from funnel.build.plan import Plan
    from funnel.build.runner import BuildResult
    from funnel.project.checks import TestResult
    from funnel.project.manifest import Manifest

P = ParamSpec("P")
R = TypeVar("R")


def _funnel_errors(method: Callable[P, R]) -> Callable[P, R]:
    """`method` with an OSError (raw_data naming a file, a folder without permission) raised
    as the FunnelError the CLI prints for it: the one kind of exception a caller catches."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except OSError as e:
            raise from_os_error(e) from e

    return wrapper


class Project:
    """A funnel project (the folder with environments.toml) and one of its envs."""

    @_funnel_errors
    def __init__(self, path: str | Path = ".", env: str = "dev", raw_data: str | Path | None = None) -> None:
        from funnel.project.config import load_config

        self.config = load_config(Path(path))
        self.env = self.config.environment(env, raw_data)

    @_funnel_errors
    def manifest(self, vars: dict[str, Any] | None = None) -> Manifest:
        """The project compiled for the env (and `vars` over environments.toml's [vars])."""
        from funnel.project.manifest import compile

        return compile(self.config, self.env, vars)

    @_funnel_errors
    def plan(self, select: str | None = None, vars: dict[str, Any] | None = None, full_refresh: bool = False) -> Plan:
        """What a build would load, run and test now, and why (on Spark: everything, always)."""
        from funnel.build.runner import make_plan

        return make_plan(self.manifest(vars), select, full_refresh)

    @_funnel_errors
    def build(
        self, select: str | None = None, vars: dict[str, Any] | None = None, full_refresh: bool = False, wait: float = 0.0
    ) -> BuildResult:
        """Build the env on its engine and publish it if every error test passes (else TestFailure)."""
        from funnel.build.runner import build

        return build(self.manifest(vars), select, wait, full_refresh)

    @_funnel_errors
    def test(self, select: str | None = None) -> list[TestResult]:
        """Run the data tests on the last build."""
        from funnel.build.runner import run_tests

        results, _ = run_tests(self.manifest(), select=select)
        return results

    @_funnel_errors
    def df(self, model: str = names.SALES_FUNNEL, month: str | None = None) -> Any:
        """The rows of `model` in the last build (only `month`, YYYY-MM, when given).

        A pandas DataFrame when pandas is installed, else a list of dicts (one per row).
        """
        from funnel.outputs.query import check_month, show

        if month is not None:
            check_month(month)
        table = show(self.env, model, month)
        try:
            import pandas
        except ImportError:
            return [dict(zip(table.columns, row, strict=True)) for row in table.rows]
        return pandas.DataFrame.from_records(table.rows, columns=list(table.columns))

    @_funnel_errors
    def report(self, out: str | Path = "report.html", month: str | None = None) -> Path:
        """Write the last build as one self-contained HTML file (`funnel report`) and return its path."""
        from funnel.outputs.html_report import write_report

        return write_report(self.manifest(), month, Path(out))
