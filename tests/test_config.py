from pathlib import Path

import pytest

from funnel.errors import ConfigError
from funnel.project.config import load_config


def write(root: Path, text: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "environments.toml").write_text(text)
    return root


def test_paths_resolve_against_the_config_folder(tmp_path, monkeypatch):
    root = write(tmp_path / "p", '[dev]\ndatabase = "target/dev.duckdb"\nschema = "s"\nraw_data = "exports/june"\n')
    monkeypatch.chdir(tmp_path)
    env = load_config(root).environment("dev")
    assert env.database == root / "target" / "dev.duckdb"
    assert env.raw_data == root / "exports" / "june"
    assert env.threads is None and env.memory_limit is None


def test_project_is_found_from_a_subfolder(tmp_path, monkeypatch):
    root = write(tmp_path / "p", '[dev]\ndatabase = "d.duckdb"\nschema = "s"\n')
    (root / "sql" / "staging").mkdir(parents=True)
    monkeypatch.chdir(root / "sql" / "staging")
    monkeypatch.delenv("FUNNEL_PROJECT_DIR", raising=False)
    assert load_config().root == root


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('[dev]\ndatabase = "d"\nschema = "s"\nthreds = 2\n', "[dev] unknown key 'threds'. Did you mean 'threads'?"),
        ('[dev]\ndatabase = "d"\nschema = "s"\nthreads = "two"\n', "key 'threads' must be a whole number"),
        ('[dev]\ndatabase = "d"\nschema = "s"\nthreads = true\n', "key 'threads' must be a whole number"),
        ('[dev]\ndatabase = "d"\nschema = "s"\nthreads = 0\n', "threads must be 1 or more"),
        ('[dev]\ndatabase = "d"\nschema = "s x"\n', "schema 's x' must be a plain identifier"),
        ('[dev]\ndatabase = "d"\nschema = "s\\"; drop table x; --"\n', "must be a plain identifier"),
        ('[dev]\nschema = "s"\n', "[dev] is missing the key 'database'"),
        ('[dev]\ndatabase = "d"\nschema = "s"\nmemory_limit = "lots"\n', "memory_limit 'lots' must look like '1GB'"),
        ("[dev\n", "invalid TOML"),
        ("", "declares no environment"),
        ("dev = 3\n", "top-level key 'dev' must be an environment table"),
        (
            '[dev]\ndatabase = "d"\nschema = "s"\n[dev.postgres]\npassword = "hunter2"\n',
            "[dev].postgres holds a password; remove it and set PGPASSWORD or use ~/.pgpass instead.",
        ),
        ('[dev]\ndatabase = "d"\nschema = "s"\n[dev.postgres]\nprot = 5432\n', "unknown key 'prot'. Did you mean 'port'?"),
    ],
    ids=[
        "unknown-key",
        "wrong-type",
        "bool-for-int",
        "zero-threads",
        "schema-space",
        "schema-injection",
        "missing-database",
        "bad-memory-limit",
        "invalid-toml",
        "empty",
        "not-a-table",
        "password",
        "postgres-typo",
    ],
)
def test_bad_config_is_one_clear_error(tmp_path, text, words):
    root = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(root)
    assert words in str(info.value)
    assert str(root / "environments.toml") in str(info.value)


def test_two_environments_cannot_share_a_database_file(tmp_path):
    root = write(tmp_path, '[dev]\ndatabase = "b/x.duckdb"\nschema = "s"\n[prod]\ndatabase = "./b/x.duckdb"\nschema = "t"\n')
    with pytest.raises(ConfigError, match=r"\[prod\] and \[dev\] use the same database file"):
        load_config(root)


def test_unknown_environment_suggests_the_closest(tmp_path):
    root = write(tmp_path, '[dev]\ndatabase = "d"\nschema = "s"\n[prod]\ndatabase = "p"\nschema = "t"\n')
    with pytest.raises(ConfigError, match="unknown environment 'prd'. Did you mean 'prod'"):
        load_config(root).environment("prd")


def test_raw_data_override_order(tmp_path, monkeypatch):
    root = write(tmp_path, '[dev]\ndatabase = "d"\nschema = "s"\nraw_data = "exports/june"\n')
    project = load_config(root)
    assert project.environment("dev").raw_data == root / "exports" / "june"
    monkeypatch.setenv("FUNNEL_RAW_DATA", str(tmp_path / "from_env"))
    assert project.environment("dev").raw_data == tmp_path / "from_env"
    assert project.environment("dev", tmp_path / "from_flag").raw_data == tmp_path / "from_flag"


def test_no_config_anywhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FUNNEL_PROJECT_DIR", raising=False)
    with pytest.raises(ConfigError, match="no environments.toml in .* or its parents"):
        load_config()


def test_the_shipped_config_declares_dev_and_prod_like_the_original():
    project = load_config(Path(__file__).resolve().parent.parent)
    assert project.environment("dev").schema == "public_pipedrive_analytics"
    assert project.environment("prod").schema == "prod_pipedrive_analytics"
    assert project.environment("dev").database.name == "dev.duckdb"


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("0", "lock_timeout must be a number of seconds above 0, like 10, not 0."),
        ("-1.5", "not -1.5."),
        ("inf", "not inf."),
        ("nan", "not nan."),
        ('"10"', "key 'lock_timeout' must be a number, not '10'."),
        ("true", "key 'lock_timeout' must be a number, not True."),
    ],
)
def test_postgres_lock_timeout_is_a_finite_number_of_seconds(tmp_path, value, words):
    root = write(tmp_path, f'[dev]\ndatabase = "d"\nschema = "s"\n[dev.postgres]\nlock_timeout = {value}\n')
    with pytest.raises(ConfigError, match=r"\[dev\]\.postgres ") as raised:
        load_config(root)
    assert words in str(raised.value)


def test_postgres_lock_timeout_defaults_to_10_seconds_and_stays_out_of_the_connection(tmp_path):
    root = write(
        tmp_path, '[dev]\ndatabase = "d"\nschema = "s"\n[dev.postgres]\nhost = "h"\n[prod]\ndatabase = "p"\nschema = "s"\n'
    )
    (root / "environments.toml").write_text((root / "environments.toml").read_text() + "[prod.postgres]\nlock_timeout = 2.5\n")
    project = load_config(root)
    assert project.environment("dev").postgres.lock_timeout == 10
    assert project.environment("prod").postgres.lock_timeout == 2.5
    assert project.environment("dev").postgres.conninfo_params() == {"host": "h"}
