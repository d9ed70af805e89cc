"""The `funnel` command: parse options, call one core function, show the result.

Annotations are evaluated at import (no `from __future__ import annotations`): typer reads
them on every start, and as strings they would cost it 15 ms of eval per run.
"""

import functools
import os
import signal
import sys
from collections.abc import Callable, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from typer.core import TyperGroup


class _Group(TyperGroup):
    """Click's standalone handling, with every usage error as one short `Error:` line, exit 2."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        try:  # typer 0.26+ carries its own copy of click
            from typer._click import exceptions as click
        except ImportError:  # pragma: no cover
            from click import exceptions as click  # type: ignore[no-redef]

        try:
            code = super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
        except typer.Abort:
            print(_interrupt_note[0], file=sys.stderr)
            code = 130
        except click.ClickException as e:
            from funnel.cli.console import printable

            if isinstance(e, click.UsageError) and e.ctx is not None:
                hint = f"Try '{e.ctx.command_path} {e.ctx.help_option_names[0]}' for help." if e.ctx.help_option_names else ""
                print(f"{e.ctx.get_usage()}\n{hint}\n", file=sys.stderr)
            print(f"Error: {printable(_shorten_values(e.format_message()))}", file=sys.stderr)
            code = 2 if isinstance(e, click.UsageError) else e.exit_code
        if not standalone_mode:
            return code
        sys.exit(code if isinstance(code, int) else 0)


def _shorten_values(message: str) -> str:
    """Click quotes what the user typed; a 100 kB value is cut, not echoed whole."""
    import re

    from funnel.errors import shorten

    # A quoted value opens after a space or punctuation, never right after a word: the
    # text between the quotes of 'dev' and 'prod' in "'dev' in x. Did you mean 'prod'?" is not one.
    return re.sub(r"(?<![\w'])'([^']{61,})'(?!\w)", lambda m: repr(shorten(m.group(1), 60)), message)


app = typer.Typer(
    cls=_Group,
    help="Turn a Pipedrive CSV export into a monthly sales-funnel report.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain click output for help and usage errors: an `Error: ...` line like every other
    # failure, and no rich import just to print help.
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        from funnel import DISTRIBUTION, __version__

        print(f"{DISTRIBUTION} {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", "-V", help="Print the version and exit.", callback=_print_version, is_eager=True)
    ] = False,
) -> None:
    """Turn a Pipedrive CSV export into a monthly sales-funnel report."""


F = TypeVar("F", bound=Callable[..., Any])
UNCHANGED = "Interrupted; the last good build is unchanged"
# What Ctrl-C or SIGTERM leaves behind, as true as it is at the moment it is printed: each
# command says what it is doing, and the core reports when it has published (`_published`).
_interrupt_note = ["Interrupted"]


def _interrupted_means(note: str) -> None:
    _interrupt_note[0] = note


class Format(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


def _selector(value: str | None) -> Any:
    """Parse --select once, into the value every core function takes."""
    from funnel.errors import ConfigError
    from funnel.project.selectors import parse

    if value is None:
        return None
    try:
        return parse(value)
    except ConfigError as e:
        raise typer.BadParameter(str(e).removeprefix("--select: ")) from None


def _excluder(value: str | None) -> Any:
    from funnel.errors import ConfigError
    from funnel.project.selectors import parse

    if value is None:
        return None
    try:
        return parse(value, "--exclude")
    except ConfigError as e:
        raise typer.BadParameter(str(e).removeprefix("--exclude: ")) from None


EnvOption = Annotated[str, typer.Option("--env", "-e", help="Environment from environments.toml.")]
SelectOption = Annotated[
    str | None,
    typer.Option(
        "--select",
        "-s",
        help="Models: NAME, +NAME, NAME+, @NAME, a folder, path:sql/x, tag:x; space = or, comma = and.",
        callback=_selector,
    ),
]


ExcludeOption = Annotated[
    str | None,
    typer.Option("--exclude", "-x", help="Models to leave out, in --select's grammar.", callback=_excluder),
]
VarOption = Annotated[
    list[str] | None,
    typer.Option("--var", help="KEY=VALUE for var() in the models, over environments.toml's [vars]; repeatable."),
]


def _month(value: str | None) -> str | None:
    from funnel.outputs.query import MONTH

    if value is not None and not MONTH.fullmatch(value):
        raise typer.BadParameter(f"{_quoted(value)} is not a month; use YYYY-MM, e.g. 2024-02.")
    return value


def _quoted(value: str) -> str:
    from funnel.errors import shorten

    return repr(shorten(value, 60))


def _path(value: str | Path) -> Path:
    """A path option's value (the parser of every one): an empty value is a usage error.

    Path('') is the current folder; `--out ''` (an unset shell variable) wrote there silently.
    """
    if isinstance(value, Path):  # a default
        return value
    if not value.strip():
        raise typer.BadParameter("the path is empty; give one ('.' names the current folder).")
    return Path(value)


def _finite(value: float) -> float:
    import math

    if not math.isfinite(value):
        raise typer.BadParameter(f"{value} is not a number of seconds; give a finite number like 30.")
    return value


def handle_errors(command: F) -> F:
    """Turn expected failures into one `Error:` line and exit 1; Ctrl-C into exit 130."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from funnel.cli.console import error
        from funnel.errors import FunnelError, TestFailure

        _interrupted_means("Interrupted")
        try:
            return command(*args, **kwargs)
        except KeyboardInterrupt:
            print(_interrupt_note[0], file=sys.stderr)
            raise typer.Exit(130) from None
        except typer.Exit:
            raise
        except Exception as e:
            if _signals_received:
                # DuckDB turns a signal that arrives mid-query into an error of its own.
                print(_interrupt_note[0], file=sys.stderr)
                raise typer.Exit(130) from None
            if isinstance(e, FunnelError):
                if isinstance(e, TestFailure) and e.rows:
                    from funnel.cli.console import failing_rows

                    failing_rows(e.rows)
                error(str(e))
                raise typer.Exit(1) from None
            if isinstance(e, BrokenPipeError):
                # The reader of our stdout (`| head`) has had enough: that is not an error.
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                raise typer.Exit(0) from None
            if isinstance(e, OSError):
                from funnel.errors import from_os_error

                error(str(from_os_error(e)))
                raise typer.Exit(1) from None
            raise

    return wrapper  # type: ignore[return-value]


def _project_env(env: str, raw_data: Path | None = None) -> tuple[Any, Any]:
    from funnel.project.config import load_config

    config = load_config()
    return config, config.environment(_known_env(config, env), raw_data)


def _known_env(config: Any, name: str, option: str = "--env") -> str:
    """`name` if environments.toml declares it; else a usage error (exit 2): the value names nothing."""
    from funnel.errors import did_you_mean

    if name not in config.environments:
        raise typer.BadParameter(
            f"unknown environment {_quoted(name)} in {config.config_path}." + did_you_mean(name, list(config.environments)),
            param_hint=f"'{option}'",
        )
    return name


def _manifest(
    env: str, raw_data: Path | None = None, given_vars: list[str] | None = None, select: Any = None, exclude: Any = None
) -> Any:
    """The project compiled for `env` (and --var): what every command below works from.

    A `select` or `exclude` naming no model, folder, path or tag of the project is a usage
    error (exit 2) naming its option, before anything runs.
    """
    from funnel.errors import ConfigError, FunnelError
    from funnel.project.config import parse_var
    from funnel.project.definitions import check_given
    from funnel.project.manifest import compile
    from funnel.project.steps import PIPELINE, with_pipeline

    config, environment = _project_env(env, raw_data)
    try:
        variables = dict(parse_var(v) for v in given_vars or [])
        check_given(variables)  # a near-miss name or a value not allowed: a usage error, exit 2
        if PIPELINE in variables:
            with_pipeline(variables, config.sql_dir, "--var")  # a pipeline the seed does not name, too
    except ConfigError as e:
        raise typer.BadParameter(str(e).removeprefix("--var "), param_hint="'--var'") from None
    manifest = compile(config, environment, variables)
    for selector in (select, exclude):
        if selector is not None:
            try:
                manifest.graph.select(selector)
            except FunnelError as e:
                option = selector.option
                raise typer.BadParameter(str(e).removeprefix(f"{option}: "), param_hint=f"'{option}'") from None
    return manifest


_signals_received: list[int] = []


def _interrupt(signum: int, frame: Any) -> None:
    _signals_received.append(signum)
    raise KeyboardInterrupt


def main() -> None:
    """Entry point of the `funnel` script and `python -m funnel`."""
    # Ctrl-C, and the SIGTERM of `kill`, timeouts and cron: clean up, say so, exit 130.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        app()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    else:
        code = 0
    # Every file and database is closed by now; skipping the interpreter's teardown of
    # DuckDB, typer and friends saves ~20 ms of a 0.2 s build.
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BrokenPipeError:
            pass
    os._exit(code)


if __name__ == "__main__":
    main()
