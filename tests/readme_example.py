"""The example README.md documents: the shipped project's models that its Models section names.

README's examples print whole builds (every model's line, "23 models"), so they hold for the
example as the README describes it. A model someone adds to sql/ without naming it there (a
fork's own report, say) is theirs, not the example's: tests/test_readme.py runs the examples
in a project without it, and the test run's summary names it (tests/conftest.py), so a model
meant for the example is not shipped undocumented by accident. A model the README names must
exist (test_readme.py checks), so the README cannot describe one that is gone.
"""

from __future__ import annotations

import re
from pathlib import Path

LAYERS = ("seeds", "staging", "intermediate", "reporting")
NOT_MODELS = {"tests", "columns", "seeds"}  # tests.toml, columns.toml, seeds.toml beside the models
MODEL_NAME = re.compile(r"\b(?:stg|int|rep)_\w+")  # how the example's model names start (and funnel_steps)


def models_section(readme: Path) -> str:
    """The diagram of README's "## Models" section."""
    return readme.read_text(encoding="utf-8").split("## Models\n\n```\n", 1)[1].split("```", 1)[0]


def project_models(sql: Path) -> dict[str, Path]:
    """Every model and seed of a project's sql/ folder, by name."""
    return {p.stem: p for layer in LAYERS for p in sorted((sql / layer).glob("*.*")) if p.stem not in NOT_MODELS}


def named(readme: Path) -> set[str]:
    """The model names README's Models section spells (funnel_steps, stg_*, int_*, rep_*)."""
    diagram = models_section(readme)
    return set(MODEL_NAME.findall(diagram)) | ({"funnel_steps"} if re.search(r"\bfunnel_steps\b", diagram) else set())


def unnamed(readme: Path, sql: Path) -> list[str]:
    """The project's models that README's Models section does not name."""
    diagram = models_section(readme)
    return sorted(m for m in project_models(sql) if not re.search(rf"\b{re.escape(m)}\b", diagram))


def leave_out(sql: Path, models: list[str]) -> None:
    """Remove `models` from a project's sql/ folder, with the data tests and column
    descriptions that name them, so it builds as the example the README describes."""
    if not models:
        return
    files = project_models(sql)
    for model in models:
        files[model].unlink()
    names = "|".join(map(re.escape, models))
    refs = re.compile(rf"""\bref\(\s*['"]({names})['"]""")
    for test in (sql / "tests").glob("*.sql"):
        if refs.search(test.read_text(encoding="utf-8")):
            test.unlink()
    mentions = re.compile(rf"""^\s*(?:model|to)\s*=\s*["']({names})["']""", re.M)
    for layer in LAYERS:
        for name in ("tests.toml", "columns.toml", "seeds.toml"):
            path = sql / layer / name
            if path.exists():
                path.write_text(without_tables(path.read_text(encoding="utf-8"), models, mentions), encoding="utf-8")


def without_tables(text: str, models: list[str], mentions: re.Pattern[str]) -> str:
    """A TOML file without its `[[test]]` tables that name one of `models` and its `[model]` tables."""
    chunks = re.split(r"(?m)^(?=\[)", text)
    kept = []
    for chunk in chunks:
        header = chunk.split("\n", 1)[0].strip()
        if header == "[[test]]" and mentions.search(chunk):
            continue
        if header.strip("[]") in models:
            continue
        kept.append(chunk)
    return "".join(kept)
