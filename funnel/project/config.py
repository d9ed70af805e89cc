"""environments.toml: one frozen `Environment` per declared environment.

Paths in the file are resolved against the file's folder, so funnel behaves the same
from any working directory. Unknown keys and wrong types are errors, never ignored.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from funnel.errors import ConfigError, did_you_mean
from funnel.project import definitions

CONFIG_FILE = "environments.toml"
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")  # use with fullmatch
MEMORY_LIMIT = re.compile(r"\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)", re.IGNORECASE)

POSTGRES_KEYS: dict[str, type | tuple[type, ...]] = {
    "host": str,
    "port": int,
    "user": str,
    "dbname": str,
    "sslmode": str,
    "lock_timeout": (int, float),
}
# `[models]` is reserved: the materialization of each folder under sql/.
MODELS_TABLE = "models"
Materialization = Literal["view", "table"]
MATERIALIZATIONS: tuple[Materialization, ...] = ("view", "table")
DEFAULT_MATERIALIZATIONS = {"staging": "view"}  # any other folder: table
# `[vars]` is reserved: what var() reads in models, for every environment.
VARS_TABLE = "vars"
# `[pipedrive]` is reserved: it configures `funnel pull`, it is not an environment.
PIPEDRIVE_TABLE = "pipedrive"
PIPEDRIVE_KEYS = {"api_url": str, "request_budget": int, "budget_share": (int, float)}
# `engine = "spark"`: the env builds on Apache Spark (funnel/engine/spark/engine.py); DuckDB is the default.
ENGINES = ("duckdb", "spark")
SPARK_ONLY_KEYS = ("master", "warehouse", "spark")
URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://.+")  # use with fullmatch: s3a://bucket/path, hdfs://nn/path


@dataclass(frozen=True)
class Postgres:
    """Where `funnel export` writes; the password never comes from here."""

    host: str | None = None
    port: int | None = None
    user: str | None = None
    dbname: str | None = None
    sslmode: str | None = None
    lock_timeout: float = 10.0  # seconds export may wait, in short tries, for readers' locks

    def conninfo_params(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if v is not None and k != "lock_timeout"}


@dataclass(frozen=True)
class PipedriveSettings:
    """Where `funnel pull` reads from; the API token never comes from here."""

    api_url: str | None = None
    request_budget: int | None = None
    budget_share: float | None = None  # of the daily token budget; None: funnel's default (0.5)


@dataclass(frozen=True)
class Environment:
    name: str
    database: Path
    schema: str
    raw_data: Path | None  # None: the environment names no export; a build needs --raw-data
    threads: int | None = None
    memory_limit: str | None = None
    postgres: Postgres = field(default_factory=Postgres)
    config_path: Path = Path(CONFIG_FILE)
    vars: dict[str, Any] = field(default_factory=dict)  # [<env>.vars]: over the project's [vars]
    engine: str = "duckdb"  # or "spark": the build runs on Spark, readers use `database` as always
    master: str = "local[*]"  # Spark master URL (engine spark)
    warehouse: str | None = None  # engine spark: folder (absolute) or URI the Parquet outputs go to
    spark: dict[str, str] = field(default_factory=dict)  # [<env>.spark]: SparkSession builder settings

    def export_folder(self) -> Path:
        """The export this environment builds from; ConfigError when it names none.

        There is no default: an environment that publishes (prod) must say which export it
        reads, or a build would quietly publish the bundled sample.
        """
        if self.raw_data is None:
            raise ConfigError(
                f'{self.config_path}: [{self.name}] names no export; set raw_data = "path/to/export" there, '
                "or pass --raw-data or FUNNEL_RAW_DATA."
            )
        return self.raw_data


@dataclass(frozen=True)
class Config:
    """The project folder: environments.toml, sql/ and what the file declares."""

    root: Path
    environments: dict[str, Environment]
    pipedrive: PipedriveSettings = field(default_factory=PipedriveSettings)
    # sql/ folder -> materialization of its models ([models] in the file; config() wins)
    materializations: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_MATERIALIZATIONS))
    vars: dict[str, Any] = field(default_factory=dict)  # [vars]: what var() reads in every env

    def variables(self, env: Environment, given: dict[str, Any] | None = None) -> dict[str, Any]:
        """What var() reads for `env`: [vars], then [<env>.vars], then --var, each winning.

        `given` holds the same names and values as [vars] does: the Python API's build(vars=)
        reaches here unparsed, and a None, a list or a key 1 went on into the cache and SQL.
        """
        given = _vars("--var", given or {})
        definitions.check(self.config_path, env.name, self.vars, env.vars, given)  # funnel/project/definitions.py
        return {**self.vars, **env.vars, **given}

    def var_origin(self, env: Environment, given: dict[str, Any] | None, name: str) -> str:
        """Where the var `name` that var() reads for `env` was set, as messages name it."""
        if name in (given or {}):
            return "--var"
        if name in env.vars:
            return f"{self.config_path}: [{env.name}.vars]"
        return f"{self.config_path}: [vars]"

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_FILE

    @property
    def sql_dir(self) -> Path:
        return self.root / "sql"

    def environment(self, name: str, raw_data: str | os.PathLike[str] | None = None) -> Environment:
        """The environment `name`, with `raw_data` (or $FUNNEL_RAW_DATA) overriding its folder."""
        if name not in self.environments:
            raise ConfigError(f"{self.config_path}: unknown environment '{name}'." + did_you_mean(name, list(self.environments)))
        env = self.environments[name]
        override = raw_data if raw_data is not None else os.environ.get("FUNNEL_RAW_DATA")
        if override:
            env = Environment(**{**vars(env), "raw_data": Path(override).resolve()})
        require_outside_export(env)
        return env


def require_outside_export(env: Environment) -> None:
    """Refuse an env whose database (or Spark warehouse) lies inside its export folder: a build
    would write the database, its lock and temporary files among the export's files, and
    replace one of them if the path names it."""
    folder = env.raw_data
    if folder is None:
        return
    if env.database.is_relative_to(folder):
        raise ConfigError(
            f"{env.config_path}: [{env.name}] database {env.database} is inside the export folder {folder}; "
            f"point database at a file outside it, e.g. target/{env.name}.duckdb."
        )
    if env.warehouse and not URI.fullmatch(env.warehouse) and Path(env.warehouse).is_relative_to(folder):
        raise ConfigError(
            f"{env.config_path}: [{env.name}] warehouse {env.warehouse} is inside the export folder {folder}; "
            "point warehouse at a folder outside it."
        )


ENV_KEYS: dict[str, type | tuple[type, ...]] = {
    "database": str,
    "schema": str,
    "raw_data": str,
    "threads": int,
    "memory_limit": str,
    "postgres": dict,
    "vars": dict,
    "engine": str,
    "master": str,
    "warehouse": str,
    "spark": dict,
}


def find_root(start: Path | None = None) -> Path:
    """The nearest folder at or above `start` (default: $FUNNEL_PROJECT_DIR or cwd) with the config."""
    explicit = os.environ.get("FUNNEL_PROJECT_DIR")
    if start is None and explicit:
        root = Path(explicit).resolve()
        if not (root / CONFIG_FILE).is_file():
            raise ConfigError(f"FUNNEL_PROJECT_DIR={explicit}: no {CONFIG_FILE} there.")
        return root
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / CONFIG_FILE).is_file():
            return folder
    raise ConfigError(
        f"no {CONFIG_FILE} in {here} or its parents; run funnel inside the project folder or set FUNNEL_PROJECT_DIR."
    )


def load_config(root: Path | None = None) -> Config:
    """Read and validate environments.toml under `root` (found upwards from cwd by default)."""
    root = find_root() if root is None else root.resolve()
    path = root / CONFIG_FILE
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: not found; create it (see README).") from None
    except NotADirectoryError:  # Project("environments.toml"): the file, not its folder
        raise ConfigError(f"{root}: not a folder; name the folder that holds {CONFIG_FILE}.") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: invalid TOML: {e}.") from None
    pipedrive = _pipedrive(path, data.pop(PIPEDRIVE_TABLE, {}))
    materializations = _materializations(path, data.pop(MODELS_TABLE, {}))
    variables = _vars(f"{path}: [{VARS_TABLE}]", data.pop(VARS_TABLE, {}))
    if not data:
        raise ConfigError(f"{path}: declares no environment; add a [dev] table (see README).")
    envs = {name: _environment(path, name, table) for name, table in data.items()}
    owners: dict[Path, str] = {}
    for env in envs.values():
        if env.database in owners:
            raise ConfigError(
                f"{path}: [{env.name}] and [{owners[env.database]}] use the same database file "
                f"{env.database}; give each environment its own."
            )
        owners[env.database] = env.name
    return Config(root=root, environments=envs, pipedrive=pipedrive, materializations=materializations, vars=variables)


def _vars(where: str, table: Any) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table of name = value.")
    for key, value in table.items():
        if not isinstance(key, str) or not IDENTIFIER.fullmatch(key):
            raise ConfigError(f"{where} '{key}' is not a plain name (letters, digits, _).")
        if not isinstance(value, str | int | float | bool):
            raise ConfigError(f"{where} {key} must be a string, number or true/false, not {type(value).__name__}.")
    return dict(table)


def parse_var(text: str) -> tuple[str, Any]:
    """`--var KEY=VALUE`: VALUE read as a TOML value (true, 3, 1.5, "x") or else as text."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not IDENTIFIER.fullmatch(key):
        raise ConfigError(f"--var {text[:60]!r} must look like KEY=VALUE, e.g. --var timezone=Europe/Berlin.")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    if not isinstance(value, str | int | float | bool):
        value = raw
    return key, value


def _materializations(path: Path, table: Any) -> dict[str, str]:
    where = f"{path}: [{MODELS_TABLE}]"
    if not isinstance(table, dict):
        raise ConfigError(f'{where} must be a table of sql/ folder = "view" or "table".')
    out = dict(DEFAULT_MATERIALIZATIONS)
    for folder, kind in table.items():
        if not IDENTIFIER.fullmatch(folder) or folder in ("tests", "seeds"):
            raise ConfigError(f"{where} '{folder}' is not a model folder under sql/ (tests and seeds are not).")
        if kind not in MATERIALIZATIONS:
            raise ConfigError(f'{where} {folder} = {kind!r}: a folder\'s models are "view" or "table".')
        out[folder] = kind
    return out


def _environment(path: Path, name: str, table: Any) -> Environment:
    where = f"{path}: [{name}]"
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: top-level key '{name}' must be an environment table like [{name}].")
    _check_keys(where, table, ENV_KEYS)
    for key in ("database", "schema"):
        if key not in table:
            raise ConfigError(f"{where} is missing the key '{key}'.")
    schema = table["schema"]
    if not IDENTIFIER.fullmatch(schema):
        raise ConfigError(f"{where} schema '{schema}' must be a plain identifier (letters, digits, _).")
    threads = table.get("threads")
    if threads is not None and threads < 1:
        raise ConfigError(f"{where} threads must be 1 or more (omit it to use every core).")
    memory_limit = table.get("memory_limit")
    if memory_limit is not None and not MEMORY_LIMIT.fullmatch(memory_limit):
        raise ConfigError(f"{where} memory_limit '{memory_limit}' must look like '1GB' or '512MB'.")
    base = path.parent
    for key in ("database", "raw_data"):
        if key in table and not table[key].strip():
            raise ConfigError(f"{where} {key} is empty; name a path relative to {path.name}.")
    database = (base / table["database"]).resolve()
    if table["database"].endswith(("/", "\\")) or database.is_dir():
        raise ConfigError(f"{where} database '{table['database']}' is a folder; name a file, e.g. build/{name}.duckdb.")
    engine, master, warehouse, spark = _engine(where, base, table)
    return Environment(
        name=name,
        database=database,
        schema=schema,
        raw_data=(base / table["raw_data"]).resolve() if "raw_data" in table else None,
        config_path=path,
        vars=_vars(f"{where}.vars", table.get("vars", {})),
        threads=threads,
        memory_limit=memory_limit,
        postgres=_postgres(f"{where}.postgres", table.get("postgres", {})),
        engine=engine,
        master=master,
        warehouse=warehouse,
        spark=spark,
    )


def _engine(where: str, base: Path, table: dict[str, Any]) -> tuple[str, str, str | None, dict[str, str]]:
    """engine, master, warehouse and the [<env>.spark] settings of one environment table."""
    engine = table.get("engine", "duckdb")
    if engine not in ENGINES:
        raise ConfigError(f"{where} engine '{engine}' is not one of {', '.join(ENGINES)}." + did_you_mean(engine, ENGINES))
    if engine != "spark":
        for key in SPARK_ONLY_KEYS:
            if key in table:
                raise ConfigError(f'{where} {key} is a Spark setting; add engine = "spark" or remove {key}.')
        return engine, "local[*]", None, {}
    master = table.get("master", "local[*]")
    if not master.strip():
        raise ConfigError(f'{where} master is empty; name a Spark master like "local[*]" or "spark://host:7077".')
    raw = table.get("warehouse")
    if raw is None or not raw.strip():
        raise ConfigError(f'{where} engine "spark" needs warehouse = "folder or URI" for the Parquet outputs.')
    warehouse = raw if URI.fullmatch(raw) else str((base / raw).resolve())
    settings = table.get("spark", {})
    spark: dict[str, str] = {}
    for key, value in settings.items():
        if isinstance(value, dict | list) or not key.strip():
            raise ConfigError(f"{where}.spark {key!r} must be a Spark setting with a string, number or boolean value.")
        spark[key] = str(value).lower() if isinstance(value, bool) else str(value)
    return engine, master, warehouse, spark


def _postgres(where: str, table: dict[str, Any]) -> Postgres:
    if "password" in table:
        raise ConfigError(f"{where} holds a password; remove it and set PGPASSWORD or use ~/.pgpass instead.")
    _check_keys(where, table, POSTGRES_KEYS)
    lock_timeout = table.get("lock_timeout", Postgres.lock_timeout)
    if not (math.isfinite(lock_timeout) and lock_timeout > 0):
        raise ConfigError(f"{where} lock_timeout must be a number of seconds above 0, like 10, not {lock_timeout!r}.")
    return Postgres(**table)


def _pipedrive(path: Path, table: Any) -> PipedriveSettings:
    where = f"{path}: [{PIPEDRIVE_TABLE}]"
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: '{PIPEDRIVE_TABLE}' must be a table like [{PIPEDRIVE_TABLE}] (it configures funnel pull).")
    if "api_token" in table or "token" in table:
        raise ConfigError(f"{where} holds an API token; remove it and set PIPEDRIVE_API_TOKEN instead.")
    _check_keys(where, table, PIPEDRIVE_KEYS)
    budget = table.get("request_budget")
    if budget is not None and budget < 1:
        raise ConfigError(f"{where} request_budget must be 1 or more.")
    share = table.get("budget_share")
    if share is not None and not (0 < share <= 1):
        raise ConfigError(f"{where} budget_share must be more than 0 and at most 1 (a share of the daily API budget).")
    return PipedriveSettings(**table)


def _check_keys(where: str, table: dict[str, Any], allowed: dict[str, Any]) -> None:
    for key, value in table.items():
        if key not in allowed:
            raise ConfigError(f"{where} unknown key '{key}'." + did_you_mean(key, list(allowed)))
        expected = allowed[key]
        # bool is an int in Python; `threads = true` is still a mistake.
        if not isinstance(value, expected) or isinstance(value, bool):
            kind = expected.__name__ if isinstance(expected, type) else "number"
            raise ConfigError(f"{where} key '{key}' must be a {_kind(kind)}, not {value!r}.")


def _kind(name: str) -> str:
    return {"str": "string", "int": "whole number", "dict": "table"}.get(name, name)
