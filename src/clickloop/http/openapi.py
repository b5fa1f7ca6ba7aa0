"""The OpenAPI 3.1 document of /api/v1, served at /api/v1/openapi.json and fuzzed in CI.

The API reads from it what each operation accepts: its query parameters and its body's shape
(`check_body`), so the document and the checks cannot drift apart.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from clickloop.domain.deliveries import DeliveryState
from clickloop.errors import InvalidInput
from clickloop.services.campaigns import PERIODS, SORTS, STATES
from clickloop.services.queries import MAX_LIMIT
from clickloop.services.report_query import QUERY_SCHEMA
from clickloop.services.reports import GROUPS

_TEXT = {"type": "string"}
_OPTIONAL_TEXT = {"type": ["string", "null"]}
# S2S request headers: name -> value template (macros allowed), e.g. {"Access-Token": "…"}
_HEADERS: dict[str, Any] = {"type": ["object", "null"], "additionalProperties": {"type": "string"}}
_ID = {"type": "integer", "minimum": 1}
_MONEY = {
    "type": ["string", "number"],
    "pattern": r"^-?\d+(\.\d+)?$",
    "description": "decimal, best as text",
}
_STATUSES = {"type": "array", "items": {"type": "string"}, "description": "[] = every status"}
_ERROR = {
    "type": "object",
    "required": ["code", "message"],
    "properties": {"code": _TEXT, "message": _TEXT, "field": _TEXT},
}
_ANY_OBJECT = {"type": "object"}
_VALUES = {
    "type": "object",
    "additionalProperties": {"type": ["integer", "string", "null"]},
    "description": "metric name -> value: counts as numbers, money and ratios as decimal text, "
    "null where a ratio has no denominator",
}
_REPORT_ROW = {
    "type": "object",
    "required": ["dimensions", "labels", "metrics"],
    "properties": {
        "dimensions": {"type": "object", "additionalProperties": _TEXT},
        "labels": {"type": "object", "additionalProperties": _TEXT},
        "metrics": _VALUES,
        "previous": _VALUES,
        "change": {
            **_VALUES,
            "description": "metric name -> change from previous in percent (null from 0)",
        },
    },
}
_DATE = {"type": "string", "format": "date"}
_DATES = {"type": "object", "properties": {"from": _DATE, "to": _DATE}}
_REPORT = {
    "type": "object",
    "required": ["source", "range", "rows", "total_rows", "truncated"],
    "properties": {
        "source": {
            "type": "string",
            "description": "the path that answered: raw, or aggregates:<cube>",
        },
        "range": {"type": "object", "properties": {"from": _DATE, "to": _DATE, "timezone": _TEXT}},
        "attribution": _TEXT,
        "grouping": {"type": "array", "items": _TEXT},
        "metrics": {"type": "array", "items": _TEXT},
        "currency": _TEXT,
        "rows": {"type": "array", "items": _REPORT_ROW},
        "totals": _REPORT_ROW,
        "total_rows": {"type": "integer", "description": "groups that pass the filters"},
        "truncated": {"type": "boolean", "description": "rows past the page were left out"},
        "limit": {"type": "integer"},
        "offset": {"type": "integer"},
        "previous_range": _DATES,
    },
}
_RESEND_BODY = {
    "type": "object",
    "properties": {
        "rerender": {
            "type": "boolean",
            "description": "render the request again from the current configuration and the "
            "stored click and conversion; the old delivery is superseded",
        }
    },
}
_PERIOD_HELP = "default last_7_days, in the settings' time zone; custom takes from and to"
_PAGE = {
    "type": "object",
    "required": ["items", "next_cursor"],
    "properties": {"items": {"type": "array"}, "next_cursor": _OPTIONAL_TEXT},
}

ENTITY_SCHEMAS: dict[str, dict[str, Any]] = {
    "traffic-sources": {
        "type": "object",
        "additionalProperties": False,
        "required": ["name"],
        "properties": {
            "name": _TEXT,
            "parameters": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "param"],
                    "properties": {"name": _TEXT, "param": _TEXT, "macro": _TEXT},
                },
            },
            "postback_url": _OPTIONAL_TEXT,
            "postback_method": {"type": "string", "enum": ["GET", "POST"]},
            "postback_body": _OPTIONAL_TEXT,
            "postback_headers": _HEADERS,
            "postback_statuses": _STATUSES,
            "response_must_contain": _OPTIONAL_TEXT,
            "template": _OPTIONAL_TEXT,
        },
    },
    "affiliate-networks": {
        "type": "object",
        "additionalProperties": False,
        "required": ["name"],
        "properties": {
            "name": _TEXT,
            "offer_params": _TEXT,
            "postback_params": _TEXT,
            "status_trainings": {
                "type": "object",
                "additionalProperties": {"type": "array", "items": _TEXT},
            },
            "postback_allowed_ips": {"type": "array", "items": _TEXT},
            "notes": _TEXT,
            "template": _OPTIONAL_TEXT,
        },
    },
    "offers": {
        "type": "object",
        "additionalProperties": False,
        "required": ["name", "url"],
        "properties": {
            "name": _TEXT,
            "url": {"type": "string", "format": "uri"},
            "affiliate_network_id": {"type": ["integer", "null"]},
            "currency": {"type": "string", "pattern": "^[A-Za-z]{3}$"},
            "payout": _MONEY,
            "upsell": {"type": "boolean"},
        },
    },
    "campaigns": {
        "type": "object",
        "additionalProperties": False,
        "required": ["name", "alias"],
        "properties": {
            "name": _TEXT,
            "alias": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"},
            "traffic_source_id": {"type": ["integer", "null"]},
            "cost_model": {"type": "string", "enum": ["none", "cpc", "cpc_param"]},
            "cost_value": _MONEY,
            "status": {"type": "string", "enum": ["active", "paused"]},
            "tracking_domain": {
                "type": ["string", "null"],
                "description": "one of the tracking_domains setting; null: the default",
            },
            "offers": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["offer_id"],
                    "properties": {"offer_id": _ID, "weight": {"type": "integer"}},
                },
            },
            "postbacks": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["url"],
                    "properties": {
                        "url": _TEXT,
                        "method": {"type": "string", "enum": ["GET", "POST"]},
                        "body": _OPTIONAL_TEXT,
                        "headers": _HEADERS,
                        "statuses": _STATUSES,
                        "response_must_contain": _OPTIONAL_TEXT,
                    },
                },
            },
        },
    },
}


AD_PLATFORM_BODY: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["platform", "pixel_id", "access_token"],
    "properties": {
        "platform": {"type": "string", "enum": ["meta", "tiktok"]},
        "pixel_id": _TEXT,
        "access_token": _TEXT,
        "test_event_code": _OPTIONAL_TEXT,
        "event_source_url": _OPTIONAL_TEXT,
        "events": {"type": ["object", "null"], "additionalProperties": _TEXT},
        "statuses": _STATUSES,
        "api_base": _OPTIONAL_TEXT,
    },
}


def _query(name: str, schema: dict[str, Any], description: str = "") -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


def _path(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema}


_PAGING = [
    _query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}),
    _query("cursor", _TEXT, "next_cursor of the previous page"),
]


def _operation(
    summary: str,
    *,
    parameters: list[dict[str, Any]] | None = None,
    body: dict[str, Any] | None = None,
    ok: int = 200,
    result: dict[str, Any] | None = None,
    media: str = "application/json",
    body_required: bool = True,
) -> dict[str, Any]:
    responses: dict[str, Any] = {
        str(ok): {"description": "success", "content": {media: {"schema": result or _ANY_OBJECT}}},
    }
    for status, meaning in (
        ("401", "missing or unknown token"),
        ("403", "a read-only (analyst) token asked for a change"),
        ("404", "not found"),
        ("409", "conflict"),
        ("422", "invalid input"),
        ("400", "malformed body"),
        ("413", "body too large"),
        ("503", "storage unavailable"),
    ):
        responses[status] = {
            "description": meaning,
            "content": {"application/json": {"schema": _ERROR}},
        }
    operation: dict[str, Any] = {
        "summary": summary,
        "parameters": parameters or [],
        "responses": responses,
    }
    if body is not None:
        operation["requestBody"] = {
            "required": body_required,
            "content": {"application/json": {"schema": body}},
        }
    return operation


_SAVED: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "query"],
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 200},
        "query": QUERY_SCHEMA,
    },
}


def build_openapi(base_url: str) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for kind, schema in ENTITY_SCHEMAS.items():
        patch_schema = {k: v for k, v in schema.items() if k != "required"}
        paths[f"/{kind}"] = {
            "get": _operation(f"List {kind}"),
            "post": _operation(f"Create one of {kind}", body=schema, ok=201),
        }
        paths[f"/{kind}/{{id}}"] = {
            "get": _operation(f"Read one of {kind}", parameters=[_path("id", _ID)]),
            "patch": _operation(
                f"Change fields of one of {kind}", parameters=[_path("id", _ID)], body=patch_schema
            ),
        }
    conversion_filters = [
        _query("campaign_id", _ID),
        _query("type", _TEXT),
        _query("subid", _TEXT),
        _query("since", {"type": "string", "format": "date-time"}),
        _query("until", {"type": "string", "format": "date-time"}),
    ]
    paths |= {
        "/settings": {
            "get": _operation("Tracker settings (currency, time zone, aliases, postback key)"),
            "patch": _operation(
                "Change settings",
                body={
                    "type": "object",
                    "properties": {
                        "currency": {"type": "string", "pattern": "^[A-Za-z]{3}$"},
                        "timezone": _TEXT,
                        "aliases": {"type": "object", "additionalProperties": _TEXT},
                        "status_trainings": {
                            "type": "object",
                            "additionalProperties": {"type": "array", "items": _TEXT},
                        },
                        "allowed_networks": {"type": "array", "items": _TEXT},
                        "ignored_answer_status": {"type": "integer"},
                        "s2s_disable_after_hours": {"type": "integer"},
                        "tracking_domains": {
                            "type": "array",
                            "items": _TEXT,
                            "description": "base URLs of campaign links; the first is the default",
                        },
                    },
                },
            ),
        },
        "/settings/postback-key/rotate": {"post": _operation("Replace the postback key")},
        "/conversion-types": {
            "get": _operation("Built-in and custom conversion types"),
            "post": _operation(
                "Create a custom conversion type",
                body={
                    "type": "object",
                    "required": ["name"],
                    "additionalProperties": False,
                    "properties": {"name": _TEXT, "label": _TEXT},
                },
                ok=201,
            ),
        },
        "/clicks": {
            "get": _operation(
                "Clicks, newest first",
                parameters=[_query("campaign_id", _ID), *_PAGING],
                result=_PAGE,
            )
        },
        "/clicks/{subid}": {"get": _operation("One click", parameters=[_path("subid", _TEXT)])},
        "/conversions": {
            "get": _operation(
                "Conversions, newest first",
                parameters=[*conversion_filters, *_PAGING],
                result=_PAGE,
            )
        },
        "/conversions.csv": {
            "get": _operation(
                "Conversions as CSV",
                parameters=conversion_filters,
                media="text/csv",
                result={"type": "string"},
            )
        },
        "/conversions/{id}": {"get": _operation("One conversion", parameters=[_path("id", _ID)])},
        "/conversions/{id}/status": {
            "post": _operation(
                "Set a conversion's status by hand, by the postback rules (logged as MANUAL)",
                parameters=[_path("id", _ID)],
                body={
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["status"],
                    "properties": {
                        "status": {"type": "string", "enum": ["lead", "sale", "rejected"]}
                    },
                },
            )
        },
        "/received-postbacks": {
            "get": _operation(
                "The received-postback log, newest first",
                parameters=[
                    _query(
                        "outcome",
                        {"type": "string", "enum": ["accepted", "updated", "duplicate", "ignored"]},
                    ),
                    _query("reason", _TEXT, "text the reason contains"),
                    _query("subid", _TEXT),
                    *_PAGING,
                ],
                result=_PAGE,
            )
        },
        "/received-postbacks/{id}/reprocess": {
            "post": _operation(
                "Run an ignored postback again from the log", parameters=[_path("id", _ID)]
            )
        },
        "/deliveries": {
            "get": _operation(
                "The sent S2S postback log, newest first",
                parameters=[
                    _query(
                        "state", {"type": "string", "enum": [str(state) for state in DeliveryState]}
                    ),
                    _query("conversion_id", _ID),
                    _query("subid", _TEXT, "the subid of the click that triggered the delivery"),
                    *_PAGING,
                ],
                result=_PAGE,
            )
        },
        "/deliveries/resend-failed": {
            "post": _operation(
                "Queue every failed delivery again (rerender: from the current configuration)",
                body=_RESEND_BODY,
                body_required=False,
            )
        },
        "/deliveries/{id}": {
            "get": _operation("One delivery with its attempts", parameters=[_path("id", _ID)])
        },
        "/deliveries/{id}/resend": {
            "post": _operation(
                "Queue one delivery again, as stored or (rerender) from the current configuration",
                parameters=[_path("id", _ID)],
                body=_RESEND_BODY,
                body_required=False,
            )
        },
        "/campaigns/stats": {
            "get": _operation(
                "The campaign list with each campaign's figures for a period (docs/ui.md)",
                parameters=[
                    _query("period", {"type": "string", "enum": list(PERIODS)}, _PERIOD_HELP),
                    _query("from", {"type": "string", "format": "date"}, "with period=custom"),
                    _query("to", {"type": "string", "format": "date"}, "with period=custom"),
                    _query("search", _TEXT, "text the name or alias contains"),
                    _query("traffic_source_id", _ID),
                    _query("network_id", _ID, "an affiliate network of the campaign's offers"),
                    _query(
                        "state",
                        {"type": "string", "enum": list(STATES)},
                        "default: active and paused (archived ones only when asked)",
                    ),
                    _query("sort", {"type": "string", "enum": list(SORTS)}),
                    _query("order", {"type": "string", "enum": ["asc", "desc"]}),
                ],
            )
        },
        "/campaigns/status": {
            "post": _operation(
                "Pause or resume several campaigns at once (all or none)",
                body={
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["ids", "status"],
                    "properties": {
                        "ids": {"type": "array", "items": _ID, "minItems": 1},
                        "status": {"type": "string", "enum": ["active", "paused"]},
                    },
                },
            )
        },
        "/campaigns/{id}/clone": {
            "post": _operation(
                "Copy a campaign with its offers, weights and S2S postbacks",
                parameters=[_path("id", _ID)],
                body={
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "name": {"type": "string", "description": "default: NAME (copy)"},
                        "alias": {"type": "string", "description": "default: ALIAS-copy"},
                    },
                },
                body_required=False,
                ok=201,
            )
        },
        "/campaigns/{id}/archive": {
            "post": _operation(
                "Archive a campaign: paused, hidden from the list, its link answers 404",
                parameters=[_path("id", _ID)],
            )
        },
        "/campaigns/{id}/restore": {
            "post": _operation(
                "Restore an archived campaign (it comes back paused)",
                parameters=[_path("id", _ID)],
            )
        },
        "/campaigns/{id}/ad-platform-postbacks": {
            "post": _operation(
                "Add a Meta Conversions API or TikTok Events API target to the campaign's S2S",
                parameters=[_path("id", _ID)],
                body=AD_PLATFORM_BODY,
                ok=201,
            )
        },
        "/traffic-sources/{id}/ad-platform-postback": {
            "put": _operation(
                "Make a Meta or TikTok conversions API target the source's S2S postback",
                parameters=[_path("id", _ID)],
                body=AD_PLATFORM_BODY,
            )
        },
        "/exports/google-ads": {
            "get": _operation(
                "Conversions by gclid in Google Ads' offline conversion import format (CSV)",
                parameters=[
                    _query("conversion_name", _TEXT, "the Google Ads conversion action's name"),
                    _query("from", {"type": "string", "format": "date"}),
                    _query("to", {"type": "string", "format": "date"}),
                    _query("statuses", _TEXT, "conversion types, comma-separated (sale)"),
                    _query("campaign_id", _ID),
                ],
                media="text/csv",
                result={"type": "string"},
            )
        },
        "/reports": {
            "get": _operation(
                "Clicks, conversions, revenue, cost, profit, ROI, CR and EPC by group",
                parameters=[
                    _query("group_by", {"enum": list(GROUPS)}),
                    _query("from", {"type": "string", "format": "date"}),
                    _query("to", {"type": "string", "format": "date"}),
                    _query("timezone", _TEXT),
                    _query("campaign_id", _ID),
                    _query("format", {"type": "string", "enum": ["json", "csv"]}),
                ],
            )
        },
        "/reports/build": {
            "post": _operation(
                "The report builder: grouping, metrics, filters, sort, page, totals, "
                "click- or conversion-time attribution and period comparison (docs/reports.md)",
                parameters=[
                    _query(
                        "format",
                        {"type": "string", "enum": ["json", "csv"]},
                        "csv: the rows and the totals as CSV, one column per dimension and metric",
                    )
                ],
                body=QUERY_SCHEMA,
                body_required=False,
                result=_REPORT,
            )
        },
        "/saved-reports": {
            "get": _operation("List saved reports (name and report builder query)"),
            "post": _operation("Save a report builder query under a name", body=_SAVED, ok=201),
        },
        "/saved-reports/{id}": {
            "patch": _operation(
                "Rename a saved report or replace its query",
                parameters=[_path("id", _ID)],
                body={k: v for k, v in _SAVED.items() if k != "required"},
            ),
            "delete": _operation("Delete a saved report", parameters=[_path("id", _ID)], ok=204),
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "clickloop admin API",
            "version": "1",
            "description": "Bearer tokens come from `clickloop token create NAME`.",
        },
        "servers": [{"url": f"{base_url}/api/v1"}],
        "components": {
            "securitySchemes": {"token": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"token": []}],
        "paths": paths,
    }


_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, Decimal),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
    "null": (type(None),),
}
_TYPE_WORDS = {
    "string": "text",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "array": "a list",
    "object": "an object",
    "null": "null",
}


def check_body(schema: dict[str, Any], value: Any, where: str = "") -> None:
    """Raise InvalidInput naming the first part of `value` that `schema` refuses: a wrong JSON
    type, a missing required or an undeclared property, text with NUL or a lone surrogate.

    Patterns and enums are left to the services, whose messages say more.
    """
    if isinstance(value, str):
        if "\x00" in value:
            raise InvalidInput(where or "body", "cannot contain NUL (\\u0000)")
        if not value.isascii() and not _encodable(value):
            raise InvalidInput(where or "body", "text that is not valid Unicode")
    kinds = schema.get("type")
    if kinds is not None:
        names = kinds if isinstance(kinds, list) else [kinds]
        # JSON true is not a number, though Python's bool is an int.
        fits = any(
            isinstance(value, _JSON_TYPES[name])
            and not (isinstance(value, bool) and name != "boolean")
            for name in names
        )
        if not fits:
            raise InvalidInput(where or "body", " or ".join(_TYPE_WORDS[n] for n in names))
    if isinstance(value, list):
        for index, item in enumerate(value):
            check_body(schema.get("items", {}), item, f"{where}[{index}]")
    if isinstance(value, dict):
        properties: dict[str, Any] = schema.get("properties", {})
        for name in schema.get("required", ()):
            if name not in value:
                raise InvalidInput(_join(where, name), "required")
        extra = schema.get("additionalProperties", {})
        for name, item in value.items():
            check_body({}, name, _join(where, name))
            if name in properties:
                check_body(properties[name], item, _join(where, name))
            elif extra is False:
                raise InvalidInput(_join(where, name), "not a field of this body")
            else:
                check_body(extra if isinstance(extra, dict) else {}, item, _join(where, name))


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True
