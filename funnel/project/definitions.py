"""The funnel's definitions: the vars that choose how the report counts, declared in one place.

Every team defines its funnel a little differently (a deal re-entering a stage, skipped
stages, the time zone of a month, calls not yet done). The SQL under sql/ reads each
choice with `var('name', default)`; this module declares the allowed values and checks
what environments.toml ([vars], [<env>.vars]) and `--var` give before anything is
rendered, so a typo is an error naming where it came from, never a silently different
report. Vars with other names stay free for a project's own models, except near-misses
of these names (`stage_entri`), which are typos.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from funnel.errors import ConfigError, shorten

# What a time zone name may look like before it is looked up: it is pasted into SQL.
ZONE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+)*")


@dataclass(frozen=True)
class Definition:
    """One var of the funnel: its allowed values, the default (today's report) first."""

    name: str
    values: tuple[Any, ...]  # empty: checked by `check_value` instead
    meaning: str

    @property
    def default(self) -> Any:
        return self.values[0] if self.values else "UTC"


DEFINITIONS: dict[str, Definition] = {
    d.name: d
    for d in (
        Definition("stage_entry", ("first", "every", "first_per_lifecycle"), "which entries into a stage count"),
        Definition("backfill_skipped_stages", (False, True), "a later stage also counts the skipped earlier ones"),
        Definition("timezone", (), "the time zone of a calendar month"),
        Definition("calls", ("done", "all"), "which activities of the call types count"),
        Definition("call_months", ("every", "first"), "in which months a deal's calls count"),
        Definition("zero_fill", (False, True), "a row of 0 for every month and step without deals"),
    )
}


def defaults() -> dict[str, Any]:
    return {name: d.default for name, d in DEFINITIONS.items()}


def non_default(variables: Mapping[str, Any]) -> dict[str, Any]:
    """The definitions in `variables` that differ from today's report, in declared order."""
    return {name: variables[name] for name, d in DEFINITIONS.items() if name in variables and variables[name] != d.default}


def describe(variables: Mapping[str, Any]) -> str:
    """'stage_entry=every, timezone=Europe/Berlin' for the non-default ones; '' for none."""
    return ", ".join(f"{k}={text(v)}" for k, v in non_default(variables).items())


def check(config_path: Path, env_name: str, project: Mapping[str, Any], env: Mapping[str, Any], given: Mapping[str, Any]) -> None:
    """Raise ConfigError for a definition var with a value it does not allow, a near-miss
    name, or a combination the SQL cannot count; each message names where the value came from."""
    sources = (
        (f"{config_path}: [vars]", project),
        (f"{config_path}: [{env_name}.vars]", env),
        ("--var", given),
    )
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for where, table in sources:
        for name, value in table.items():
            _check_name(where, name)
            if name in DEFINITIONS:
                _check_value(where, name, value)
                merged[name], origin[name] = value, where
    entry = merged.get("stage_entry", "first")
    if merged.get("backfill_skipped_stages", False) is True and entry != "first":
        raise ConfigError(
            f"{origin['backfill_skipped_stages']} backfill_skipped_stages = true only works with "
            f'stage_entry = "first", but {origin["stage_entry"]} sets stage_entry = "{entry}"; drop one of them.'
        )


def check_given(given: Mapping[str, Any]) -> None:
    """Raise ConfigError for a --var whose name nearly names a definition or whose value the
    definition does not allow: typed on the command line, so the CLI makes it a usage error."""
    for name, value in given.items():
        _check_name("--var", name)
        if name in DEFINITIONS:
            _check_value("--var", name, value)


def _check_name(where: str, name: str) -> None:
    if name in DEFINITIONS:
        return
    close = difflib.get_close_matches(name, list(DEFINITIONS), n=1, cutoff=0.8)
    if close:
        raise ConfigError(f"{where} '{name}' is not a funnel definition. Did you mean '{close[0]}'?")


def _close(word: str, choices: list[str]) -> str:
    """' Did you mean 'x'?' for a close choice; '' when none is (the message lists them)."""
    close = difflib.get_close_matches(word[:200], choices, n=1)
    return f" Did you mean '{close[0]}'?" if close else ""


def _check_value(where: str, name: str, value: Any) -> None:
    definition = DEFINITIONS[name]
    if name == "timezone":
        if not isinstance(value, str) or not ZONE_NAME.fullmatch(value) or value not in time_zones():
            raise ConfigError(
                f"{where} timezone = {shorten(repr(value), 60)} is not an IANA time zone name such as "
                f'"Europe/Berlin" or "UTC".' + _close(str(value), sorted(time_zones()))
            )
        return
    # bool is an int in Python: compare types too, so 1 is not taken for true.
    if any(type(value) is type(allowed) and value == allowed for allowed in definition.values):
        return
    allowed = " or ".join(_toml(v) for v in definition.values)
    raise ConfigError(
        f"{where} {name} = {shorten(_toml(value), 60)} is not allowed; use {allowed} ({definition.meaning})."
        + _close(str(value), [str(v) for v in definition.values if isinstance(v, str)])
    )


@cache
def time_zones() -> frozenset[str]:
    """The zones DuckDB's built-in ICU extension knows (the SQL converts with them)."""
    import duckdb

    with duckdb.connect() as db:
        db.execute("set enable_progress_bar = false")  # DuckDB's bar goes to stdout (funnel/engine/database.py, quiet)
        return frozenset(row[0] for row in db.sql("select name from pg_timezone_names()").fetchall())


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return f'"{value}"' if isinstance(value, str) else str(value)


def text(value: Any) -> str:
    return _toml(value).strip('"')
