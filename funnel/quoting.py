"""Quoting for the SQL funnel writes: every name and literal from a file or the command
line goes through these, never into SQL as it is."""


def quote_ident(name: str) -> str:
    """A quoted SQL identifier: quote_ident('a"b') -> '"a""b"'."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    """A quoted SQL string literal: quote_literal("it's") -> "'it''s'"."""
    return "'" + text.replace("'", "''") + "'"


def relation(schema: str, name: str) -> str:
    """schema.name, both quoted."""
    return f"{quote_ident(schema)}.{quote_ident(name)}"
