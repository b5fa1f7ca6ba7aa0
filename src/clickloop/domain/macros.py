"""Keitaro macro engine: `{name}`, `{_name}`, `{name:ARGUMENT}` in offer URLs and S2S postbacks.

Rules (Keitaro-compatible; where Keitaro is silent, the choice is written here):

- `{name}` renders `encode(format_value(value))`; `{_name}` renders the value raw, not encoded.
  Names are `[A-Za-z_][A-Za-z0-9_]*`, matched case-insensitively (`values` keys are lower-case).
  A leading `_` always means "raw", so `{_x}` is the raw value of `x`.
- A name present in `values` with None renders "" silently. A name absent from `values` renders ""
  and is reported in `Rendered.unknown` as written, lower-cased (`{_Externa_ID}` → `_externa_id`).
  Before giving up, Keitaro's synonyms are tried (`revenue` = `payout` = `conversion_revenue`,
  `ua`/`useragent` = `user_agent`, `referer` = `referrer`, `country_code` = `country`,
  `keitaro_campaign_id`/`keitaro_campaign_name`), and `date` falls back to `now`.
- Datetime values: `{date:FORMAT,TZ}`, `{conversion_time:U}` format with PHP `date()` letters
  (`phpdate.format_php_date`) in TZ: an IANA name (case-sensitive), `UTC` or an offset like
  `+03:00`; default UTC. The part after the last comma is taken as TZ only when it is a known
  zone or looks like one (contains `/`, or is an offset), so `{date:D, d M Y}` is one format.
  An empty FORMAT, or no argument at all, means `Y-m-d H:i:s` in UTC (Keitaro documents
  `{date}` only as "date, UTC by default"; unix seconds are one letter away: `{date:U}`).
  An unknown TZ renders in UTC and is reported.
- An argument of space-separated `word=replacement` pairs maps the value
  (`{status:lead=0 sale=1 rejected=2}`); words match case-insensitively; an unmapped value
  renders as itself. Any other argument of a non-datetime value (`{keyword:UTF-8}`,
  `{country:en}`) is ignored: values are already UTF-8 and names are not translated.
- Helpers: `{random:MIN,MAX}` draws an integer in [MIN, MAX] (bounds in either order; plain
  `{random}` is PHP's `mt_rand()` range [0, 2147483647]); `{sample:a,b,c}` picks one of the
  comma-separated items, each stripped of surrounding spaces. They win over `values` entries of
  the same name. Unusable arguments render "".
- Warnings for a usable name with an unusable argument (bad `random` bounds, empty `sample`,
  unknown TZ) are reported in `unknown` as `name:ARGUMENT`, the name as written and lower-cased,
  the argument verbatim: `random:a,b`, `date:Y-m-d,Mars/Base`. Entries without `:` are unknown
  names. Entries are deduplicated, in order of first appearance.
- Anything else in braces (`{}`, `{ x }`, `{"a": 1}`, an unclosed `{`) is literal text.

`rng` draws for `random`/`sample`: seed it from the delivery's identity to make renders repeatable.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from decimal import Decimal
from functools import lru_cache
from json import JSONEncoder
from typing import cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from clickloop.domain.phpdate import format_php_date, to_unix_seconds

MacroValue = str | int | Decimal | datetime | None

DEFAULT_DATE_FORMAT = "Y-m-d H:i:s"
RANDOM_MAX = 2**31 - 1  # PHP's mt_getrandmax(), the range of a bare {random}

_MACRO = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::([^{}]*))?\}")
_RESERVED = re.compile(r"[^A-Za-z0-9_.~-]")
# Index = a byte of UTF-8 seen as a latin-1 character; a list indexes faster than a dict.
_PERCENT_ESCAPES = [
    chr(byte)
    if chr(byte).isascii() and (chr(byte).isalnum() or chr(byte) in "-._~")
    else f"%{byte:02X}"
    for byte in range(256)
]
_OFFSET = re.compile(r"([+-])(\d{2}):?(\d{2})")
_JSON = JSONEncoder(ensure_ascii=False)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_MISSING = object()

_SYNONYM_GROUPS = (
    ("payout", "revenue", "conversion_revenue"),
    ("campaign_id", "keitaro_campaign_id"),
    ("campaign_name", "keitaro_campaign_name"),
    ("user_agent", "ua", "useragent"),
    ("referrer", "referer"),
    ("country", "country_code"),
)
_SYNONYMS: dict[str, tuple[str, ...]] = {
    name: tuple(other for other in group if other != name)
    for group in _SYNONYM_GROUPS
    for name in group
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Rendered:
    """A rendered template and the macro names (or `name:ARGUMENT` warnings) that had no value."""

    text: str
    unknown: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class _Macro:
    """One parsed `{...}`: everything that does not depend on the values is worked out once."""

    text: str  # as written in the template, braces included
    key: str  # lower-cased, without the raw prefix
    written: str  # lower-cased as written, for the unknown list
    raw: bool
    helper: bool  # random or sample: drawn from rng, never looked up
    warning: str  # `written:ARGUMENT`, for an unusable argument
    mapping: dict[str, str] | None
    date_format: str
    date_zone: tzinfo | None  # None: the argument names a zone that does not exist
    random_bounds: tuple[int, int] | None
    sample_items: tuple[str, ...]


def quote_url(value: str) -> str:
    """Percent-encode UTF-8 for any URL component: all but `A-Z a-z 0-9 - . _ ~` (space → %20)."""
    if _RESERVED.search(value) is None:
        return value
    # UTF-8 bytes seen as latin-1 characters, one table lookup each, all in C: ~3x faster than
    # urllib's quote(). "replace" turns a lone surrogate, which UTF-8 cannot hold, into "?".
    return value.encode("utf-8", "replace").decode("latin-1").translate(_PERCENT_ESCAPES)


def render(
    template: str,
    values: Mapping[str, MacroValue],
    *,
    now: datetime,
    rng: random.Random,
    encode: Callable[[str], str] = quote_url,
) -> Rendered:
    """Replace the macros of `template`; `encode` escapes every non-raw value (default URL)."""
    parts = _compile(template)
    if len(parts) == 1 and isinstance(parts[0], str):
        return Rendered(text=template, unknown=())
    out: list[str] = []
    unknown: dict[str, None] = {}
    for part in parts:
        if isinstance(part, str):
            out.append(part)
            continue
        value = _MISSING if part.helper else values.get(part.key, _MISSING)
        if type(value) is str and part.mapping is None:
            text = value  # the common case, kept free of calls
        else:
            text, warning = _evaluate(part, value, values, now, rng)
            if warning is not None:
                unknown[warning] = None
        if text:
            out.append(text if part.raw else encode(text))
    return Rendered(text="".join(out), unknown=tuple(unknown))


def escape_json(value: str) -> str:
    """Escape for the inside of a JSON string (quotes, backslashes, control characters)."""
    if not value.isascii():
        value = value.encode("utf-8", "replace").decode("utf-8")
    return _JSON.encode(value)[1:-1]


def render_json(
    template: str, values: Mapping[str, MacroValue], *, now: datetime, rng: random.Random
) -> Rendered | None:
    """Render a JSON body template to valid JSON; None if `template` is not JSON.

    A macro inside a JSON string renders as text, JSON-escaped (`{_name}` too: raw only means
    "not URL-encoded"). A macro standing alone as a value (`"value": {payout}`) renders as a
    JSON number when its value is a number (payout, cost, ids, `{conversion_time:U}`), as a JSON
    string otherwise, and an empty one removes its object member or array item, so a click
    without an fbclid sends no `fbc` rather than an empty one.
    """
    skeleton, bare = _json_skeleton(_compile(template))
    try:
        tree = json.loads(skeleton, parse_float=Decimal)
    except ValueError:
        return None
    unknown: dict[str, None] = {}
    rendered = _fill_json(tree, bare, values, now, rng, unknown)
    text = _dump_json(None if rendered is _MISSING else rendered)
    return Rendered(text=text, unknown=tuple(unknown))


def render_header(
    template: str, values: Mapping[str, MacroValue], *, now: datetime, rng: random.Random
) -> Rendered:
    """Render a request header value: values as they are, control characters (a CR/LF that
    would start another header) replaced by spaces."""
    rendered = render(template, values, now=now, rng=rng, encode=_as_is)
    text = _CONTROL.sub(" ", rendered.text).strip()
    if not text.isascii():  # a lone surrogate, which UTF-8 cannot hold, becomes "?"
        text = text.encode("utf-8", "replace").decode("utf-8")
    return Rendered(text=text, unknown=rendered.unknown)


def _as_is(value: str) -> str:
    return value


def _json_skeleton(parts: tuple[str | _Macro, ...]) -> tuple[str, list[_Macro]]:
    """The template with each macro standing alone as a value replaced by a placeholder string
    (NUL + its index: no template can hold a NUL), macros inside strings kept as written."""
    out: list[str] = []
    bare: list[_Macro] = []
    in_string = escaped = False
    for part in parts:
        if isinstance(part, _Macro):
            if in_string:
                out.append(part.text)
            else:
                out.append(f'"\\u0000{len(bare)}"')
                bare.append(part)
            continue
        for char in part:
            if escaped:
                escaped = False
            elif in_string and char == "\\":
                escaped = True
            elif char == '"':
                in_string = not in_string
        out.append(part)
    return "".join(out), bare


def _fill_json(
    node: object,
    bare: list[_Macro],
    values: Mapping[str, MacroValue],
    now: datetime,
    rng: random.Random,
    unknown: dict[str, None],
) -> object:
    """`node` with its macros rendered; `_MISSING` for a lone macro that rendered empty."""
    if isinstance(node, dict):
        members = {
            _fill_text(key, values, now, rng, unknown): _fill_json(
                value, bare, values, now, rng, unknown
            )
            for key, value in node.items()
        }
        return {key: value for key, value in members.items() if value is not _MISSING}
    if isinstance(node, list):
        items = (_fill_json(item, bare, values, now, rng, unknown) for item in node)
        return [item for item in items if item is not _MISSING]
    if isinstance(node, str):
        if node.startswith("\0") and node[1:].isdigit():
            return _typed_value(bare[int(node[1:])], values, now, rng, unknown)
        return _fill_text(node, values, now, rng, unknown)
    return node


def _fill_text(
    text: str,
    values: Mapping[str, MacroValue],
    now: datetime,
    rng: random.Random,
    unknown: dict[str, None],
) -> str:
    if "{" not in text:
        return text
    rendered = render(text, values, now=now, rng=rng, encode=_as_is)
    unknown.update(dict.fromkeys(rendered.unknown))
    return rendered.text


def _typed_value(
    part: _Macro,
    values: Mapping[str, MacroValue],
    now: datetime,
    rng: random.Random,
    unknown: dict[str, None],
) -> object:
    value = _MISSING if part.helper else values.get(part.key, _MISSING)
    if value is _MISSING and not part.helper:
        value = _look_up_synonym(part.key, values, now)
    text, warning = _evaluate(part, value, values, now, rng)
    if warning is not None:
        unknown[warning] = None
    if not text:
        return _MISSING
    numeric = isinstance(value, int | Decimal) and not isinstance(value, bool)
    if numeric and part.mapping is None:
        return value
    if (isinstance(value, datetime) or part.key == "random") and text.isdigit():
        return int(text)  # {conversion_time:U}, {random:1,9}
    return text


def _dump_json(node: object) -> str:
    """Compact JSON, Decimals written exactly (never through a float)."""
    if isinstance(node, dict):
        members = (f"{_dump_string(str(k))}:{_dump_json(v)}" for k, v in node.items())
        return "{" + ",".join(members) + "}"
    if isinstance(node, list):
        return "[" + ",".join(_dump_json(item) for item in node) + "]"
    if isinstance(node, str):
        return _dump_string(node)
    if isinstance(node, Decimal):
        return _format_decimal(node)
    return json.dumps(node)


def _dump_string(value: str) -> str:
    return f'"{escape_json(value)}"'


def format_value(value: MacroValue) -> str:
    """Text of a value: Decimal plain (`10.5`, `-3`, `0`), datetime unix seconds, None empty."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        return _format_decimal(value)
    if isinstance(value, datetime):
        return str(to_unix_seconds(value))
    return str(value)


def _format_decimal(value: Decimal) -> str:
    text = str(value)
    if "E" in text:
        # format "f" never uses an exponent and, unlike normalize(), never rounds to the context.
        text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _evaluate(
    part: _Macro,
    value: object,
    values: Mapping[str, MacroValue],
    now: datetime,
    rng: random.Random,
) -> tuple[str, str | None]:
    if part.helper:
        return _draw(part, rng)
    if value is _MISSING:
        value = _look_up_synonym(part.key, values, now)
        if value is _MISSING:
            return "", part.written
    if isinstance(value, datetime):
        return _format_date(part, value)
    text = format_value(cast(MacroValue, value))
    if part.mapping is not None:
        return part.mapping.get(text.casefold(), text), None
    return text, None


def _draw(part: _Macro, rng: random.Random) -> tuple[str, str | None]:
    if part.random_bounds is not None:
        return str(rng.randint(*part.random_bounds)), None
    if part.sample_items:
        return rng.choice(part.sample_items), None
    return "", part.warning


def _look_up_synonym(key: str, values: Mapping[str, MacroValue], now: datetime) -> object:
    for synonym in _SYNONYMS.get(key, ()):
        value = values.get(synonym, _MISSING)
        if value is not _MISSING:
            return value
    return now if key == "date" else _MISSING


def _format_date(part: _Macro, value: datetime) -> tuple[str, str | None]:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    zone = UTC if part.date_zone is None else part.date_zone
    text = format_php_date(value.astimezone(zone), part.date_format)
    return text, (part.warning if part.date_zone is None else None)


@lru_cache(maxsize=1024)
def _compile(template: str) -> tuple[str | _Macro, ...]:
    # Templates are few and rendered for every click or conversion: parse each once.
    parts: list[str | _Macro] = []
    position = 0
    for match in _MACRO.finditer(template):
        if match.start() > position:
            parts.append(template[position : match.start()])
        parts.append(_parse_macro(match.group(0), match.group(1), match.group(2)))
        position = match.end()
    if position < len(template) or not parts:
        parts.append(template[position:])
    return tuple(parts)


def _parse_macro(text: str, name: str, argument: str | None) -> _Macro:
    written = name.lower()
    raw = written.startswith("_")
    key = written[1:] if raw else written
    date_format, date_zone = _parse_date_argument(argument)
    return _Macro(
        text=text,
        key=key,
        written=written,
        raw=raw,
        helper=key in ("random", "sample"),
        warning=written if argument is None else f"{written}:{argument}",
        mapping=_parse_mapping(argument),
        date_format=date_format,
        date_zone=date_zone,
        random_bounds=_parse_random_bounds(argument) if key == "random" else None,
        sample_items=_parse_sample_items(argument) if key == "sample" else (),
    )


def _parse_mapping(argument: str | None) -> dict[str, str] | None:
    if argument is None or "=" not in argument:
        return None
    mapping: dict[str, str] = {}
    for pair in argument.split():
        word, equals, replacement = pair.partition("=")
        if equals:
            mapping[word.casefold()] = replacement
    return mapping


def _parse_date_argument(argument: str | None) -> tuple[str, tzinfo | None]:
    if not argument:
        return DEFAULT_DATE_FORMAT, UTC
    head, comma, tail = argument.rpartition(",")
    if not comma:
        return argument, UTC
    zone_name = tail.strip()
    if not zone_name:
        return head or DEFAULT_DATE_FORMAT, UTC
    zone = _load_zone(zone_name)
    if zone is not None or _looks_like_zone(zone_name):
        return head or DEFAULT_DATE_FORMAT, zone
    # "D, d M Y": the comma belongs to the format.
    return argument, UTC


def _looks_like_zone(name: str) -> bool:
    return ("/" in name and " " not in name) or _OFFSET.fullmatch(name) is not None


@lru_cache(maxsize=256)
def _load_zone(name: str) -> tzinfo | None:
    if name.upper() in ("UTC", "Z"):
        return UTC
    offset = _OFFSET.fullmatch(name)
    if offset is not None:
        sign, hours, minutes = offset.groups()
        delta = timedelta(hours=int(hours), minutes=int(minutes))
        if delta >= timedelta(hours=24):
            return None
        return timezone(-delta if sign == "-" else delta)
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def _parse_random_bounds(argument: str | None) -> tuple[int, int] | None:
    if argument is None:
        return 0, RANDOM_MAX
    low_text, comma, high_text = argument.partition(",")
    if not comma:
        return None
    try:
        low, high = int(low_text), int(high_text)
    except ValueError:
        return None
    return min(low, high), max(low, high)


def _parse_sample_items(argument: str | None) -> tuple[str, ...]:
    if not argument:
        return ()
    items = tuple(item.strip() for item in argument.split(","))
    return items if any(items) else ()
