"""One Pipedrive API object -> one CSV row, in the layout of funnel/project/sources.py."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from funnel.pipedrive.client import PullError, _short
from funnel.project.sources import TS, TS_ISO, TS_MICRO

# The deal fields whose changes the models read (sql/staging/tests.toml accepts these
# four); the flow of other fields (title, value, ...) is left out of deal_changes.csv.
TRACKED_FIELDS = ("add_time", "user_id", "stage_id", "lost_reason")
API_TIME = re.compile(r"(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?)(Z|[+-]\d{2}:?\d{2})?")


# What stages.csv can hold, in this order (the stage and its pipeline: GET /api/v2/stages,
# StageItem, and GET /api/v2/pipelines, PipelineItem, in Pipedrive's API reference as the
# official client documents it: pipedrive/client-php docs/versions/v2/Model/StageItem.md and
# PipelineItem.md). The file is written with the columns sql/sources.toml declares of these.
STAGE_COLUMNS = ("stage_id", "stage_name", "pipeline_id", "pipeline_name", "order_nr", "deal_probability")
DEAL_STATUSES = ("open", "won", "lost")


def _pipeline(item: dict[str, Any]) -> tuple[str, ...]:
    return (str(_int(item, "id", "pipeline")), _text(item, "name", "pipeline"))


def _stage(item: dict[str, Any], pipelines: dict[str, str]) -> tuple[str, ...]:
    """One stage in STAGE_COLUMNS; its pipeline's name from GET /api/v2/pipelines ('' when unknown)."""
    where = f"stage {item.get('id')!r}"
    pipeline = _optional_int(item, "pipeline_id", where)
    return (
        str(_int(item, "id", where)),
        _text(item, "name", where),
        pipeline,
        pipelines.get(pipeline, ""),
        _optional_int(item, "order_nr", where),
        _optional_int(item, "deal_probability", where),
    )


def _deal(item: dict[str, Any], where: str) -> tuple[str, ...]:
    """One deal of GET /api/v2/deals or /api/v2/deals/archived in deals.csv's columns (sql/sources.toml).

    Fields as Pipedrive's v2 DealItem documents them (pipedrive/client-php
    docs/versions/v2/Model/DealItem.md): value and probability are numbers, the times RFC 3339,
    expected_close_date a date; won_time and lost_time are null until the deal is won or lost.
    """
    status = _text(item, "status", where)
    if status not in DEAL_STATUSES:
        raise PullError(f"{where}: status {_short(repr(status))} is not open, won or lost; the API answer is not as documented.")
    return (
        str(_int(item, "id", where)),
        _optional_int(item, "owner_id", where),
        _optional_int(item, "pipeline_id", where),
        _optional_int(item, "stage_id", where),
        status,
        _money(item, "value", where),
        _text(item, "currency", where),
        _time(item, "add_time", where, TS),
        _optional_time(item, "won_time", where, TS),
        _optional_time(item, "lost_time", where, TS),
        _date(item, "expected_close_date", where),
        _percent(item, "probability", where),
    )


def lost_reason_ids(fields: list[tuple[str, ...]]) -> dict[str, str]:
    """label -> option id of the lost_reason deal field, from fields.csv's rows (GET /api/v1/dealFields).

    A label two options share names neither: it stays text.
    """
    ids: dict[str, str] = {}
    shared: set[str] = set()
    for _id, key, _name, options in fields:
        if key != "lost_reason" or not options:
            continue
        for option in json.loads(options):
            label = option["label"]
            if label in ids and ids[label] != option["id"]:
                shared.add(label)
            ids[label] = option["id"]
    return {label: option for label, option in ids.items() if label not in shared}


def with_lost_reason_ids(rows: list[tuple[str, ...]], ids: dict[str, str]) -> list[tuple[str, ...]]:
    """deal_changes rows with each lost_reason label that names an option written as the option's id.

    The API gives a lost reason as its text (v2 DealItem `lost_reason` is a string); the export
    layout holds the id of the lost_reason field's option. Other text (a free-text reason, a
    deleted option) is kept as it is; the build reports it as text.
    """
    return [
        (deal, at, key, ids.get(value, value)) if key == "lost_reason" else (deal, at, key, value)
        for deal, at, key, value in rows
    ]


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


def _activity(item: dict[str, Any]) -> tuple[str, ...] | None:
    """One activity of GET /api/v2/activities; None for one marked deleted.

    v2 ActivityItem has `is_deleted` (pipedrive/client-nodejs src/versions/v2/models/activity-item.ts);
    the list is not documented to return deleted activities, but one that it did must not count.
    """
    where = f"activity {item.get('id')!r}"
    if item.get("is_deleted") is True:
        return None
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


def _money(item: dict[str, Any], key: str, where: str) -> str:
    """A JSON number as a plain decimal with at most two places (deals.csv's DECIMAL(18,2)); '' for null."""
    value = item.get(key)
    if value is None:
        return ""
    try:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidOperation
        amount = Decimal(str(value))
        if not amount.is_finite() or amount.as_tuple().exponent < -2:  # type: ignore[operator]
            raise InvalidOperation
    except InvalidOperation:
        raise PullError(f"{where}: {key} {_short(repr(value))} is not an amount of money with at most two decimals.") from None
    return format(amount.normalize() if amount == amount.to_integral() else amount, "f")


def _percent(item: dict[str, Any], key: str, where: str) -> str:
    """A whole percentage ('' for null): deals.csv's probability is BIGINT."""
    value = item.get(key)
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value) or not 0 <= value <= 100:
        raise PullError(
            f"{where}: {key} {_short(repr(value))} is not a whole percentage from 0 to 100; set the deal's probability "
            "to a whole number in Pipedrive and pull again."
        )
    return str(int(value))


def _date(item: dict[str, Any], key: str, where: str) -> str:
    value = item.get(key)
    if value is None or value == "":
        return ""
    try:
        if not isinstance(value, str) or len(value) != 10:
            raise ValueError
        return date.fromisoformat(value).isoformat()
    except ValueError:
        raise PullError(f"{where}: {key} {_short(repr(value))} is not a date like 2024-01-31.") from None


def _optional_time(item: dict[str, Any], key: str, where: str, layout: str) -> str:
    return "" if item.get(key) in (None, "") else _time(item, key, where, layout)


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
