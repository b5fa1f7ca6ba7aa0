"""The ad platforms' conversion APIs as S2S targets: Meta Conversions API and TikTok Events API.

A preset turns a pixel id and an access token into an ordinary S2S target (URL, POST, JSON body
template, headers, statuses), so that the outbox renders, dedups, retries and masks it like any
other. Field names follow the platforms' public documentation (docs/s2s.md, "Ad platforms").
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from clickloop.errors import InvalidInput

META_API = "https://graph.facebook.com/v19.0"
TIKTOK_API = "https://business-api.tiktok.com/open_api/v1.3"
PLATFORMS = ("meta", "tiktok")
DEFAULT_STATUSES = ("lead", "sale", "registration", "deposit")

# Conversion type -> the platform's standard event; a type not listed is sent under its own
# name (a custom event on both platforms). Meta's standard events are those of its Pixel
# reference (developers.facebook.com/docs/meta-pixel/reference); TikTok's are those of
# ads.tiktok.com/help/article/supported-standard-events, where Purchase replaced
# CompletePayment (now a reserved name that TikTok maps to Purchase: .../reserved-events).
META_EVENTS = {
    "lead": "Lead",
    "sale": "Purchase",
    "registration": "CompleteRegistration",
    "deposit": "Purchase",
}
TIKTOK_EVENTS = {
    "lead": "SubmitForm",
    "sale": "Purchase",
    "registration": "CompleteRegistration",
    "deposit": "Purchase",
}

_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_TOKEN = re.compile(r"[!-z|~]{1,1000}")  # printable ASCII without spaces and braces (macros)
_TOKEN_WORDS = "printable text without spaces or braces"
_EVENT = re.compile(r"[A-Za-z0-9_]{1,64}")
# Stable per conversion and status: a retry or resend carries the same id, so the platform
# counts the event once; a conversion moving on (lead -> sale) is a new event.
EVENT_ID = "{conversion_id}-{status}"


@dataclass(frozen=True, slots=True, kw_only=True)
class AdPlatformTarget:
    """What a user fills in to send conversions to a platform's API."""

    platform: str
    pixel_id: str
    access_token: str
    test_event_code: str | None = None
    event_source_url: str | None = None
    events: Mapping[str, str] | None = None  # conversion type -> event name, over the defaults
    statuses: Sequence[str] = DEFAULT_STATUSES
    api_base: str | None = None  # a gateway (or a test receiver) instead of the platform


def parse_target(fields: Mapping[str, Any]) -> AdPlatformTarget:
    """Validate what the API, UI or CLI sent; InvalidInput names the field at fault."""
    known = {
        "platform",
        "pixel_id",
        "access_token",
        "test_event_code",
        "event_source_url",
        "events",
        "statuses",
        "api_base",
    }
    unknown = sorted(set(fields) - known)
    if unknown:
        raise InvalidInput(unknown[0], "not a field of an ad platform target")
    platform = str(fields.get("platform") or "").strip().lower()
    if platform not in PLATFORMS:
        raise InvalidInput("platform", f"one of {', '.join(PLATFORMS)}")
    statuses = fields.get("statuses") or DEFAULT_STATUSES
    if isinstance(statuses, str):
        statuses = [s for s in statuses.split(",") if s.strip()]
    if not isinstance(statuses, list | tuple) or not all(isinstance(s, str) for s in statuses):
        raise InvalidInput("statuses", "a list of conversion types")
    return AdPlatformTarget(
        platform=platform,
        pixel_id=_match("pixel_id", fields.get("pixel_id"), _ID, "letters, digits, _ or -"),
        access_token=_match("access_token", fields.get("access_token"), _TOKEN, _TOKEN_WORDS),
        test_event_code=_optional(fields, "test_event_code", _ID, "letters, digits, _ or -"),
        event_source_url=_optional_url(fields, "event_source_url"),
        events=_events(fields.get("events")),
        statuses=tuple(s.strip().lower() for s in statuses),
        api_base=_optional_url(fields, "api_base"),
    )


def build_postback(target: AdPlatformTarget) -> dict[str, Any]:
    """The S2S target (campaign postback fields) that sends `target`'s conversions."""
    if target.platform == "meta":
        return _meta(target)
    return _tiktok(target)


def _meta(target: AdPlatformTarget) -> dict[str, Any]:
    base = (target.api_base or META_API).rstrip("/")
    event: dict[str, Any] = {
        "event_name": _event_macro(META_EVENTS, target.events),
        "event_time": "{conversion_time:U}",
        "event_id": EVENT_ID,
        "action_source": "website",
        "user_data": {
            "fbc": "{fbc}",
            "client_ip_address": "{ip}",
            "client_user_agent": "{user_agent}",
        },
        "custom_data": {"value": "{payout}", "currency": "{currency}"},
    }
    if target.event_source_url:
        event["event_source_url"] = target.event_source_url
    body: dict[str, Any] = {"data": [event]}
    if target.test_event_code:
        body["test_event_code"] = target.test_event_code
    token = quote(target.access_token, safe="")
    return {
        "url": f"{base}/{target.pixel_id}/events?access_token={token}",
        "method": "POST",
        "body": _template(body, lone={"event_time", "fbc", "client_ip_address",
                                     "client_user_agent", "value", "currency"}),
        "headers": {},
        "statuses": list(target.statuses),
    }  # fmt: skip


def _tiktok(target: AdPlatformTarget) -> dict[str, Any]:
    base = (target.api_base or TIKTOK_API).rstrip("/")
    event: dict[str, Any] = {
        "event": _event_macro(TIKTOK_EVENTS, target.events),
        "event_time": "{conversion_time:U}",
        "event_id": EVENT_ID,
        "user": {"ttclid": "{ttclid}", "ip": "{ip}", "user_agent": "{user_agent}"},
        "properties": {"value": "{payout}", "currency": "{currency}"},
    }
    if target.event_source_url:
        event["page"] = {"url": target.event_source_url}
    body: dict[str, Any] = {
        "event_source": "web",
        "event_source_id": target.pixel_id,
        "data": [event],
    }
    if target.test_event_code:
        body["test_event_code"] = target.test_event_code
    return {
        "url": f"{base}/event/track/",
        "method": "POST",
        "body": _template(body, lone={"event_time", "ttclid", "ip", "user_agent", "value",
                                     "currency"}),
        "headers": {"Access-Token": target.access_token},
        "statuses": list(target.statuses),
    }  # fmt: skip


def _event_macro(defaults: Mapping[str, str], overrides: Mapping[str, str] | None) -> str:
    mapping = {**defaults, **(overrides or {})}
    return "{status:" + " ".join(f"{k}={v}" for k, v in mapping.items()) + "}"


def _template(body: dict[str, Any], *, lone: set[str]) -> str:
    """The body as a JSON template: members named in `lone` hold a macro standing alone (a
    number stays a number, an empty value drops the member), the rest are JSON strings."""
    text = json.dumps(body, indent=1, ensure_ascii=False)
    for name in lone:
        text = re.sub(rf'("{name}": )"(\{{[a-z_:A-Z]+\}})"', r"\1\2", text)
    return text


def _match(field: str, value: Any, pattern: re.Pattern[str], what: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value.strip()):
        raise InvalidInput(field, f"required: {what}")
    return value.strip()


def _optional(
    fields: Mapping[str, Any], field: str, pattern: re.Pattern[str], what: str
) -> str | None:
    value = fields.get(field)
    if value is None or value == "":
        return None
    return _match(field, value, pattern, what)


def _optional_url(fields: Mapping[str, Any], field: str) -> str | None:
    value = fields.get(field)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not re.fullmatch(r"https?://[^\s{}\"]{1,2000}", value.strip()):
        raise InvalidInput(field, "an http(s) URL")
    return value.strip()


def _events(value: Any) -> dict[str, str] | None:
    if value is None or value == {}:
        return None
    if not isinstance(value, Mapping):
        raise InvalidInput("events", "an object of conversion type: event name")
    events: dict[str, str] = {}
    for kind, name in value.items():
        if not isinstance(kind, str) or not re.fullmatch(r"[a-z][a-z0-9_]{0,63}", kind.lower()):
            raise InvalidInput("events", f"not a conversion type: {kind!r}")
        if not isinstance(name, str) or not _EVENT.fullmatch(name):
            raise InvalidInput("events", f"{kind}: an event name of letters, digits and _")
        events[kind.lower()] = name
    return events
