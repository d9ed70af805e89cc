"""One Pipedrive API object -> one CSV row, in the layout of funnel/project/sources.py."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from funnel.pipedrive.client import PullError, _short
from funnel.project.sources import TS, TS_ISO, TS_MICRO

# The deal fields whose changes the models read (sql/staging/tests.toml accepts these
# four); the flow of other fields (title, value, ...) is left out of deal_changes.csv.
TRACKED_FIELDS = ("add_time", "user_id", "stage_id", "lost_reason")
API_TIME = re.compile(r"(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?)(Z|[+-]\d{2}:?\d{2})?")


def _stage(item: dict[str, Any]) -> tuple[str, ...]:
    return (str(_int(item, "id", "stage")), _text(item, "name", "stage"))


def _user(item: dict[str, Any]) -> tuple[str, ...]:
    where = "user"
    return (
        str(_int(item, "id", where)),
        _text(item, "name", where),
        _text(item, "email", where),
        _time(item, "modified", where, TS_MICRO),
    )


def _activity_type(item: dict[str, Any]) -> tuple[str, ...]:
    where = "activity type"
    return (
        str(_int(item, "id", where)),
        _text(item, "name", where),
        "Yes" if _bool(item, "active_flag", where) else "No",
        _text(item, "key_string", where),
    )


def _field(item: dict[str, Any]) -> tuple[str, ...] | None:
    where = "deal field"
    key = _text(item, "key", where)
    if key not in TRACKED_FIELDS:
        return None
    options = item.get("options") or []
    if not isinstance(options, list) or not all(isinstance(o, dict) for o in options):
        raise PullError(f"deal field {key}: 'options' is not a list of objects ({_short(repr(options))}).")
    labels = [
        {"id": str(_int(o, "id", f"deal field {key} option")), "label": _text(o, "label", f"deal field {key}")} for o in options
    ]
    return (
        str(_int(item, "id", where)),
        key,
        _text(item, "name", where),
        json.dumps(labels, ensure_ascii=False) if labels else "",
    )


def _activity(item: dict[str, Any]) -> tuple[str, ...]:
    where = f"activity {item.get('id')!r}"
    due_date = item.get("due_date")
    due_to = ""
    if due_date:
        due_time = item.get("due_time") or "00:00"
        due_to = _time({"due": f"{due_date} {due_time}"}, "due", where, TS_ISO)
    return (
        str(_int(item, "id", where)),
        _text(item, "type", where),
        _optional_int(item, "owner_id", where),
        _optional_int(item, "deal_id", where),
        "True" if _bool(item, "done", where) else "False",
        due_to,
    )


def _deal_change(deal_id: int, item: dict[str, Any], path: str) -> tuple[str, ...] | None:
    data = item.get("data")
    if item.get("object") != "dealChange" or not isinstance(data, dict):
        return None
    key = data.get("field_key")
    if key not in TRACKED_FIELDS:
        return None
    where = f"{path} change {data.get('id')!r}"
    new_value = data.get("new_value")
    if isinstance(new_value, bool) or not isinstance(new_value, str | int | float | type(None)):
        raise PullError(f"{where}: new_value {_short(repr(new_value))} is not a plain value.")
    value = "" if new_value is None else str(new_value)
    if key == "add_time" and API_TIME.fullmatch(value):
        value = _time({"v": value}, "v", where, TS_ISO)  # the export writes creation times with a T
    return (str(deal_id), _time(data, "log_time", where, TS), key, value)


def _int(item: dict[str, Any], key: str, where: str) -> int:
    value = item.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise PullError(f"{where}: {key} {_short(repr(value))} is not a whole number; the API answer is not as documented.")
    return value


def _optional_int(item: dict[str, Any], key: str, where: str) -> str:
    return "" if item.get(key) is None else str(_int(item, key, where))


def _text(item: dict[str, Any], key: str, where: str) -> str:
    value = item.get(key)
    if value is None:
        return ""
    if not isinstance(value, str) or "\x00" in value:
        raise PullError(f"{where}: {key} {_short(repr(value))} is not text.")
    return value


def _bool(item: dict[str, Any], key: str, where: str) -> bool:
    value = item.get(key)
    if not isinstance(value, bool):
        raise PullError(f"{where}: {key} {_short(repr(value))} is not true or false.")
    return value


def _time(item: dict[str, Any], key: str, where: str, layout: str) -> str:
    """An API timestamp (v1 'YYYY-MM-DD HH:MM:SS' UTC or v2 RFC 3339) in the file's declared layout, UTC."""
    value = item.get(key)
    match = API_TIME.fullmatch(value) if isinstance(value, str) else None
    try:
        if match is None:
            raise ValueError
        clock = match.group(2) + (":00" if match.group(2).count(":") == 1 else "")
        moment = datetime.fromisoformat(f"{match.group(1)}T{clock}{_zone(match.group(3))}").astimezone(UTC)
        if moment.year < 1000:  # strftime writes year 1 as '1', which no file reader takes for a date
            raise ValueError
    except (ValueError, OverflowError):
        raise PullError(
            f"{where}: {key} {_short(repr(value))} is not a timestamp like 2024-01-31 13:45:00 (years 1000 to 9999, UTC)."
        ) from None
    return moment.replace(tzinfo=None).strftime(layout)


def _zone(zone: str | None) -> str:
    if zone in (None, "Z"):
        return "+00:00"
    return zone if ":" in zone else f"{zone[:3]}:{zone[3:]}"
