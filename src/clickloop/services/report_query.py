"""The report builder's query: what it may ask for (dimensions, metrics, operators), the JSON
Schema of a `POST /api/v1/reports/build` body, and its parsing into a checked `ReportQuery`.

The schema is the one the OpenAPI document shows; `parse_query` checks a body against it and
then the rules a schema cannot say (dates, time zone, which values fit which operator).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

from clickloop.domain.statuses import ConversionType
from clickloop.errors import InvalidInput

SUB_ID_COUNT = 30
ENTITY_DIMENSIONS = ("campaign", "traffic_source", "offer", "affiliate_network")
TEXT_DIMENSIONS = (
    "country",
    "device_type",
    "os",
    "browser",
    "language",
    "referrer_domain",
    "keyword",
    "creative_id",
    "ad_campaign_id",
    "source",
    *(f"sub_id_{n}" for n in range(1, SUB_ID_COUNT + 1)),
)
TIME_DIMENSIONS = ("hour", "day", "week", "month")  # calendar buckets, in the range only
CYCLE_DIMENSIONS = ("hour_of_day", "day_of_week")  # 0..23, 1 (Monday)..7
DIMENSIONS = (
    *ENTITY_DIMENSIONS,
    *TEXT_DIMENSIONS,
    "conversion_type",
    *TIME_DIMENSIONS,
    *CYCLE_DIMENSIONS,
)
# Metrics: counts, money (Decimal strings in the tracker currency) and ratios.
TYPE_COUNT_METRICS = {
    "leads": "lead",
    "sales": "sale",
    "rejected": "rejected",
    "registrations": "registration",
    "deposits": "deposit",
}
METRICS = (
    "clicks",
    "unique_clicks",
    "conversions",
    *TYPE_COUNT_METRICS,
    "cr",
    "approval_rate",
    "revenue",
    "pending_revenue",
    "cost",
    "profit",
    "roi",
    "projected_profit",
    "projected_roi",
    "epc",
    "cpc",
    "cpa",
)
TYPED_METRIC = re.compile(r"^(conversions|revenue):([a-z][a-z0-9_]{0,63})$")
# Profit and ROI right after clicks: on a phone the first columns are the ones in view.
DEFAULT_METRICS = (
    "clicks",
    "profit",
    "roi",
    "conversions",
    "revenue",
    "cost",
    "unique_clicks",
    "cr",
    "epc",
)
DIMENSION_OPERATORS = (
    "equals",
    "not_equals",
    "in_list",
    "not_in_list",
    "contains",
    "not_contains",
    "is_empty",
)
METRIC_OPERATORS = ("gt", "lt", "between")
LIST_OPERATORS = ("in_list", "not_in_list")
PRESETS = ("today", "yesterday", "last_7_days", "last_30_days", "this_month", "last_month")
# The range a report, the campaign list or GET /reports shows when none is asked for.
DEFAULT_PRESET = "last_7_days"
ATTRIBUTIONS = ("conversion_time", "click_time")
DEFAULT_LIMIT = 100
MAX_LIMIT = 10_000
MAX_OFFSET = 1_000_000
MAX_LIST = 1000
MAX_DAYS = 731
MAX_TEXT = 500
# Reports see this century only: local time is epoch arithmetic on positive seconds.
FIRST_DAY = date(2000, 1, 1)
LAST_DAY = date(2099, 12, 31)

_VALUE = {"type": ["string", "integer", "number"]}
QUERY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "range": {
            "type": "object",
            "additionalProperties": False,
            "description": "from and to (local dates, both included) or a preset; "
            "default: the last 7 days",
            "properties": {
                "from": {"type": "string", "format": "date"},
                "to": {"type": "string", "format": "date"},
                "preset": {"type": "string", "enum": list(PRESETS)},
                "timezone": {
                    "type": "string",
                    "maxLength": 64,
                    "description": "IANA name; default: the timezone setting",
                },
            },
        },
        "grouping": {
            "type": "array",
            "maxItems": 3,
            "uniqueItems": True,
            "items": {"type": "string", "enum": list(DIMENSIONS)},
        },
        "metrics": {
            "type": "array",
            "minItems": 1,
            "maxItems": 100,
            "uniqueItems": True,
            "items": {
                "type": "string",
                "anyOf": [{"enum": list(METRICS)}, {"pattern": TYPED_METRIC.pattern}],
            },
        },
        "filters": {
            "type": "array",
            "maxItems": 50,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["name", "operator"],
                "properties": {
                    "name": {"type": "string", "maxLength": 100},
                    "operator": {
                        "type": "string",
                        "enum": [*DIMENSION_OPERATORS, *METRIC_OPERATORS],
                    },
                    "value": _VALUE,
                    "values": {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": MAX_LIST,
                        "items": _VALUE,
                    },
                },
            },
        },
        "sort": {
            "type": "array",
            "maxItems": 6,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["name"],
                "properties": {
                    "name": {"type": "string", "maxLength": 100},
                    "order": {"type": "string", "enum": ["asc", "desc"]},
                },
            },
        },
        "limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
        "offset": {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET},
        "totals": {"type": "boolean"},
        "attribution": {"type": "string", "enum": list(ATTRIBUTIONS)},
        "compare": {"type": "boolean"},
    },
}
_VALIDATOR = Draft202012Validator(QUERY_SCHEMA)


@dataclass(frozen=True, slots=True, kw_only=True)
class DimensionFilter:
    name: str
    operator: str
    values: tuple[str, ...]  # ids as digits ("" for none), hours and weekdays as digits


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricFilter:
    name: str
    operator: str
    values: tuple[Decimal, ...]  # one bound, or two for between (both included)


@dataclass(frozen=True, slots=True, kw_only=True)
class SortKey:
    name: str
    descending: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportQuery:
    date_from: date
    date_to: date  # included
    timezone: str
    grouping: tuple[str, ...] = ()
    metrics: tuple[str, ...] = DEFAULT_METRICS
    filters: tuple[DimensionFilter, ...] = ()
    metric_filters: tuple[MetricFilter, ...] = ()
    sort: tuple[SortKey, ...] = ()
    limit: int = DEFAULT_LIMIT
    offset: int = 0
    totals: bool = True
    attribution: str = "conversion_time"
    compare: bool = False

    def __post_init__(self) -> None:
        check_query(self)


def parse_query(
    body: Mapping[str, Any],
    *,
    now: datetime,
    default_timezone: str,
    conversion_types: Collection[str],
) -> ReportQuery:
    """A checked query from a build body; raises InvalidInput naming the first bad field.

    Presets count from `now` in the report's zone; `conversion_types` are the known names."""
    error = best_match(_VALIDATOR.iter_errors(body))
    if error is not None:
        raise InvalidInput(_where(error), _reason(error))
    span = body.get("range", {})
    timezone = span.get("timezone", default_timezone)
    zone = zone_named(timezone, "range.timezone")
    date_from, date_to = _dates(span, now.astimezone(zone).date())
    metrics = tuple(body.get("metrics", DEFAULT_METRICS))
    for index, name in enumerate(metrics):
        check_metric_name(name, conversion_types, f"metrics[{index}]")
    filters: list[DimensionFilter] = []
    metric_filters: list[MetricFilter] = []
    for index, item in enumerate(body.get("filters", ())):
        where = f"filters[{index}]"
        if item["name"] in DIMENSIONS:
            filters.append(_dimension_filter(item, where))
        else:
            check_metric_name(item["name"], conversion_types, f"{where}.name")
            metric_filters.append(_metric_filter(item, where))
    sort: list[SortKey] = []
    for index, item in enumerate(body.get("sort", ())):
        if item["name"] not in DIMENSIONS:
            check_metric_name(item["name"], conversion_types, f"sort[{index}].name")
        sort.append(SortKey(name=item["name"], descending=item.get("order", "asc") == "desc"))
    return ReportQuery(
        date_from=date_from,
        date_to=date_to,
        timezone=zone.key,
        grouping=tuple(body.get("grouping", ())),
        metrics=metrics,
        filters=tuple(filters),
        metric_filters=tuple(metric_filters),
        sort=tuple(sort),
        limit=body.get("limit", DEFAULT_LIMIT),
        offset=body.get("offset", 0),
        totals=body.get("totals", True),
        attribution=body.get("attribution", "conversion_time"),
        compare=body.get("compare", False),
    )


def check_query(query: ReportQuery) -> None:
    """The rules a ReportQuery holds however it was made (by parse_query or by a caller)."""
    zone_named(query.timezone, "range.timezone")
    if not FIRST_DAY <= query.date_from <= LAST_DAY:
        raise InvalidInput("range.from", f"a date from {FIRST_DAY} to {LAST_DAY}")
    if not FIRST_DAY <= query.date_to <= LAST_DAY:
        raise InvalidInput("range.to", f"a date from {FIRST_DAY} to {LAST_DAY}")
    if query.date_to < query.date_from:
        raise InvalidInput("range.to", "on or after range.from")
    if (query.date_to - query.date_from).days > MAX_DAYS:
        raise InvalidInput("range.to", f"at most {MAX_DAYS} days from range.from")
    if len(query.grouping) > 3 or len(set(query.grouping)) != len(query.grouping):
        raise InvalidInput("grouping", "at most 3 different dimensions")
    for index, name in enumerate(query.grouping):
        if name not in DIMENSIONS:
            raise InvalidInput(f"grouping[{index}]", f"not a dimension: {name}")
    named = [(f"metrics[{i}]", name) for i, name in enumerate(query.metrics)]
    named += [(f"filters[{i}].name", rule.name) for i, rule in enumerate(query.metric_filters)]
    for index, key in enumerate(query.sort):
        if key.name not in DIMENSIONS:
            named.append((f"sort[{index}].name", key.name))
    for where, name in named:
        if name not in METRICS and not TYPED_METRIC.match(name):
            raise InvalidInput(where, f"not a metric: {name[:100]}")
    for index, key in enumerate(query.sort):
        if key.name in DIMENSIONS and key.name not in query.grouping:
            raise InvalidInput(f"sort[{index}].name", f"{key.name} is not in grouping")
    if not 1 <= query.limit <= MAX_LIMIT:
        raise InvalidInput("limit", f"from 1 to {MAX_LIMIT}")
    if not 0 <= query.offset <= MAX_OFFSET:
        raise InvalidInput("offset", f"from 0 to {MAX_OFFSET}")
    if query.attribution not in ATTRIBUTIONS:
        raise InvalidInput("attribution", " or ".join(ATTRIBUTIONS))
    if query.compare and any(name in TIME_DIMENSIONS for name in query.grouping):
        raise InvalidInput("compare", "works with groupings other than hour, day, week and month")


def check_metric_name(name: str, conversion_types: Collection[str], where: str) -> None:
    if name in METRICS:
        return
    typed = TYPED_METRIC.match(name)
    if typed is None:
        raise InvalidInput(where, f"not a dimension or metric: {name[:100]}")
    if typed.group(2) not in conversion_types:
        raise InvalidInput(where, f"not a conversion type: {typed.group(2)}")


def zone_named(name: str, where: str) -> ZoneInfo:
    """The time zone called `name` (the names the timezone setting accepts), refusing any other
    with InvalidInput at `where`: never a silent UTC."""
    try:
        if 0 < len(name) <= 64:
            return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        pass
    raise InvalidInput(where, f"not a known IANA time zone: {name[:64]!r}")


def preset_range(preset: str, today: date) -> tuple[date, date]:
    """The local dates (both included) a preset names, seen on `today`."""
    if preset == "today":
        return today, today
    if preset == "yesterday":
        return today - timedelta(days=1), today - timedelta(days=1)
    if preset == "last_7_days":
        return today - timedelta(days=6), today
    if preset == "last_30_days":
        return today - timedelta(days=29), today
    if preset == "this_month":
        return today.replace(day=1), today
    last_month_end = today.replace(day=1) - timedelta(days=1)
    return last_month_end.replace(day=1), last_month_end


def _dates(span: Mapping[str, Any], today: date) -> tuple[date, date]:
    preset = span.get("preset")
    given = [name for name in ("from", "to") if name in span]
    if preset is not None:
        if given:
            raise InvalidInput(f"range.{given[0]}", "give either a preset or from and to")
        return preset_range(preset, today)
    if not given:
        return preset_range(DEFAULT_PRESET, today)
    if len(given) == 1:
        missing = "to" if given == ["from"] else "from"
        raise InvalidInput(f"range.{missing}", "required with range." + given[0])
    return _date(span["from"], "range.from"), _date(span["to"], "range.to")


def _date(text: str, where: str) -> date:
    try:
        if len(text) != 10:
            raise ValueError(text)
        return date.fromisoformat(text)
    except ValueError as exc:
        raise InvalidInput(where, "a date as YYYY-MM-DD") from exc


def _dimension_filter(item: Mapping[str, Any], where: str) -> DimensionFilter:
    name, operator = item["name"], item["operator"]
    if operator not in DIMENSION_OPERATORS:
        raise InvalidInput(
            f"{where}.operator", f"{name} is a dimension: one of {', '.join(DIMENSION_OPERATORS)}"
        )
    if name in TIME_DIMENSIONS:
        raise InvalidInput(f"{where}.name", f"{name} cannot be filtered on; use range")
    if name in CYCLE_DIMENSIONS and operator in ("contains", "not_contains"):
        raise InvalidInput(f"{where}.operator", f"{name} is a number: no {operator}")
    values = _operands(item, operator, where)
    checked = tuple(_dimension_value(name, operator, value, where) for value in values)
    return DimensionFilter(name=name, operator=operator, values=checked)


def _dimension_value(name: str, operator: str, value: Any, where: str) -> str:
    text = str(value)
    if len(text) > MAX_TEXT:
        raise InvalidInput(f"{where}.value", f"at most {MAX_TEXT} characters")
    if "\x00" in text:
        raise InvalidInput(f"{where}.value", "cannot contain NUL (\\u0000)")
    if operator in ("contains", "not_contains"):
        return text
    if name in ENTITY_DIMENSIONS:
        if not re.fullmatch(r"[0-9]{1,10}", text) or int(text) > 2**31 - 1:
            raise InvalidInput(f"{where}.value", f"a {name} id")
        return str(int(text))
    if name == "hour_of_day" and not (text.isdigit() and int(text) <= 23):
        raise InvalidInput(f"{where}.value", "an hour from 0 to 23")
    if name == "day_of_week" and not (text.isdigit() and 1 <= int(text) <= 7):
        raise InvalidInput(f"{where}.value", "a weekday from 1 (Monday) to 7 (Sunday)")
    return str(int(text)) if name in CYCLE_DIMENSIONS else text


def _metric_filter(item: Mapping[str, Any], where: str) -> MetricFilter:
    operator = item["operator"]
    if operator not in METRIC_OPERATORS:
        raise InvalidInput(
            f"{where}.operator",
            f"{item['name']} is a metric: one of {', '.join(METRIC_OPERATORS)}",
        )
    values = tuple(_number(value, f"{where}.value") for value in _operands(item, operator, where))
    if operator == "between" and values[0] > values[1]:
        raise InvalidInput(f"{where}.values", "the lower bound first")
    return MetricFilter(name=item["name"], operator=operator, values=values)


def _operands(item: Mapping[str, Any], operator: str, where: str) -> tuple[Any, ...]:
    """The operator's operands: none for is_empty, a list (`values`) for lists and between,
    else one `value`."""
    if operator == "is_empty":
        for name in ("value", "values"):
            if name in item:
                raise InvalidInput(f"{where}.{name}", "is_empty takes no value")
        return ()
    wants_list = operator in (*LIST_OPERATORS, "between")
    if ("values" if not wants_list else "value") in item:
        wrong = "values" if not wants_list else "value"
        right = "values (a list)" if wants_list else "value (one)"
        raise InvalidInput(f"{where}.{wrong}", f"{operator} takes {right}")
    if wants_list:
        if "values" not in item:
            raise InvalidInput(f"{where}.values", "required")
        values = tuple(item["values"])
        if operator == "between" and len(values) != 2:
            raise InvalidInput(f"{where}.values", "between takes two bounds")
        return values
    if "value" not in item:
        raise InvalidInput(f"{where}.value", "required")
    return (item["value"],)


def _number(value: Any, where: str) -> Decimal:
    try:
        number = Decimal(str(value))
    except InvalidOperation as exc:
        raise InvalidInput(where, "a number") from exc
    if not number.is_finite() or abs(number) > Decimal(10) ** 15:
        raise InvalidInput(where, "a finite number")
    return number


def _where(error: ValidationError) -> str:
    where = ""
    path: Iterable[Any] = error.absolute_path
    for part in path:
        where += f"[{part}]" if isinstance(part, int) else (f".{part}" if where else str(part))
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        if extra:
            where += f".{extra[0]}" if where else extra[0]
    if error.validator == "required":
        missing = [name for name in error.validator_value if name not in error.instance]
        if missing:
            where += f".{missing[0]}" if where else missing[0]
    return where or "body"


def _reason(error: ValidationError) -> str:
    kind = error.validator
    if kind == "additionalProperties":
        return "not a field of this body"
    if kind == "required":
        return "required"
    if kind == "enum":
        allowed = ", ".join(map(str, error.validator_value))
        return f"{str(error.instance)[:100]!r} is not one of {allowed}"
    if kind == "anyOf" and error.absolute_path and "metrics" in error.absolute_path:
        return f"not a metric: {str(error.instance)[:100]}"
    if kind == "maxItems":
        return f"at most {error.validator_value} items"
    if kind == "minItems":
        return f"at least {error.validator_value} item(s)"
    if kind in ("minimum", "maximum"):
        bound = "at least" if kind == "minimum" else "at most"
        return f"{bound} {error.validator_value}"
    if kind == "uniqueItems":
        return "each item once"
    if kind == "maxLength":
        return f"at most {error.validator_value} characters"
    if kind == "type":
        return " or ".join(_TYPE_WORDS.get(name, name) for name in _types(error.validator_value))
    return str(error.message)[:200]


_TYPE_WORDS = {
    "string": "text",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "array": "a list",
    "object": "an object",
}


def _types(value: Any) -> list[str]:
    return value if isinstance(value, list) else [value]


def known_types(custom: Iterable[str]) -> frozenset[str]:
    """Every conversion type name: the built-in ones and `custom`."""
    return frozenset(ConversionType) | frozenset(custom)
