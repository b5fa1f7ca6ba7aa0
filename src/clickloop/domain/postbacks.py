"""Keitaro-compatible postback parameters: raw request → a `Postback` value, and the answer.

Every problem is a value (`Ignored`) carrying the reason shown in the received-postback log.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from clickloop.domain.clicks import CLICK_FIELDS, MAX_NAME_CHARS, MAX_PARAMS, MAX_VALUE_CHARS
from clickloop.domain.clicks import parse_query as parse_form
from clickloop.domain.money import MoneyProblem, normalize_currency, parse_amount
from clickloop.domain.statuses import split_words

BUILT_IN_ALIASES: Mapping[str, str] = {"revenue": "payout"}
MAX_TID_CHARS = 200  # the conversions.tid column
MAX_STATUS_CHARS = 200
MAX_BODY_BYTES = 65536  # read at most this much of a POST body
# Parameters that steer processing rather than describe the conversion; not kept in `params`.
_CONTROL = frozenset(
    {"subid", "status", "tid", "payout", "currency", "cost", "date", "return", "from"}
    | {"ignore_status"}
)
_TRAINING = re.compile(r"(.+)_status")
# Unix seconds for 2000-01-01 .. 2100-01-01; a larger number is taken as milliseconds.
_MIN_UNIX, _MAX_UNIX = 946684800, 4102444800
GIF_PIXEL = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)


class Outcome(StrEnum):
    ACCEPTED = "accepted"
    UPDATED = "updated"
    DUPLICATE = "duplicate"
    IGNORED = "ignored"


@dataclass(frozen=True, slots=True, kw_only=True)
class Ignored:
    """A postback that records nothing, and why; `silent` ones (ignore_status) answer success."""

    reason: str
    subid: str = ""
    silent: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Postback:
    """What a postback asks for, parsed and checked; absent optional values are None."""

    subid: str
    status: str  # the network's word, trimmed: stored as the original status
    tid: str = ""
    payout: Decimal | None = None
    currency: str | None = None
    cost: Decimal | None = None
    date: datetime | None = None
    click_fields: Mapping[str, str] = field(default_factory=dict)  # sub_id_N, keyword, ...
    trainings: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # type → words
    ignore_statuses: tuple[str, ...] = ()
    answer: str | None = None  # `return`
    sender: str = ""  # `from`
    params: Mapping[str, str] = field(default_factory=dict)  # descriptive params, kept as received
    notes: tuple[str, ...] = ()  # problems that did not stop processing


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    status: int
    content_type: str
    body: bytes


def read_pairs(query: bytes, body: bytes = b"", content_type: str = "") -> list[tuple[str, str]]:
    """Name/value pairs of a request: the query string first, then a form or JSON body.

    Never raises; limits are those of click query strings (docs/postbacks.md).
    """
    pairs = parse_form(query)
    body = body[:MAX_BODY_BYTES]
    if body.strip():
        if "json" in content_type.lower() or body.lstrip()[:1] == b"{":
            pairs.extend(_json_pairs(body))
        else:
            pairs.extend(parse_form(body))
    return [(_clean(name), _clean(value)) for name, value in pairs[:MAX_PARAMS]]


def _clean(text: str) -> str:
    # NUL and lone surrogates (JSON "\ud800") cannot be stored as text by PostgreSQL/sqlite3.
    if text.isascii() and "\x00" not in text:
        return text
    return text.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")


def canonical_params(
    pairs: Iterable[tuple[str, str]], aliases: Mapping[str, str] = BUILT_IN_ALIASES
) -> dict[str, str]:
    """Parameters under their canonical lower-case names, aliases applied.

    A parameter sent under its own name beats one sent under an alias; otherwise the first wins.
    """
    lowered = {normalize_name(k): normalize_name(v) for k, v in BUILT_IN_ALIASES.items()}
    lowered |= {normalize_name(k): normalize_name(v) for k, v in aliases.items()}
    direct: dict[str, str] = {}
    aliased: dict[str, str] = {}
    for raw_name, value in pairs:
        name = normalize_name(raw_name)
        if name in lowered:
            aliased.setdefault(lowered[name], value)
        else:
            direct.setdefault(name, value)
    return aliased | direct


def normalize_name(name: str) -> str:
    return name.strip().lower()


def parse_postback(
    pairs: Iterable[tuple[str, str]],
    *,
    aliases: Mapping[str, str] = BUILT_IN_ALIASES,
    cookie_subid: str = "",
) -> Postback | Ignored:
    """Check a postback's parameters; `cookie_subid` stands in for a missing `subid` (pixels)."""
    params = canonical_params(pairs, aliases)
    subid = params.get("subid", "").strip() or cookie_subid.strip()
    if not subid:
        return Ignored(reason="subid missing")
    status = params.get("status", "").strip()
    if not status:
        return Ignored(reason="status missing", subid=subid)
    if len(status) > MAX_STATUS_CHARS:
        return Ignored(reason=f"status is too long (max {MAX_STATUS_CHARS})", subid=subid)
    tid = params.get("tid", "").strip()
    if len(tid) > MAX_TID_CHARS:
        return Ignored(reason=f"tid is too long (max {MAX_TID_CHARS})", subid=subid)
    amounts: dict[str, Decimal | None] = {}
    for name in ("payout", "cost"):
        text = params.get(name, "").strip()
        amount = parse_amount(text, field=name) if text else None
        if isinstance(amount, MoneyProblem):
            return Ignored(reason=amount.reason, subid=subid)
        amounts[name] = amount
    currency = None
    if params.get("currency", "").strip():
        code = normalize_currency(params["currency"])
        if isinstance(code, MoneyProblem):
            return Ignored(reason=code.reason, subid=subid)
        currency = code
    notes: list[str] = []
    date = None
    if params.get("date", "").strip():
        date = parse_date(params["date"])
        if date is None:
            # Networks send unfilled macros ("{date}"); losing the conversion would be worse.
            notes.append(f"date is not unix seconds or ISO 8601, used now: {params['date']}")
    trainings, ignore = _trainings(params)
    return Postback(
        subid=subid,
        status=status,
        tid=tid,
        payout=amounts["payout"],
        currency=currency,
        cost=amounts["cost"],
        date=date,
        click_fields={k: v for k, v in params.items() if k in CLICK_FIELDS and k != "cost"},
        trainings=trainings,
        ignore_statuses=ignore,
        answer=params.get("return"),
        sender=params.get("from", ""),
        params={
            k: v for k, v in params.items() if k not in _CONTROL and not _TRAINING.fullmatch(k)
        },
        notes=tuple(notes),
    )


def is_sender_allowed(address: str, allowed: Sequence[str]) -> bool:
    """Whether `address` is in one of the `allowed` addresses or networks ([] allows anyone)."""
    if not allowed:
        return True
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    for entry in allowed:
        try:
            if ip in ipaddress.ip_network(entry.strip(), strict=False):
                return True
        except ValueError:
            continue  # a malformed entry allows nobody rather than everybody
    return False


def parse_date(text: str) -> datetime | None:
    """Unix seconds (or milliseconds) or ISO 8601 (naive means UTC); None when neither."""
    value = text.strip()
    if re.fullmatch(r"\d{1,16}(?:\.\d+)?", value):
        seconds = Decimal(value)
        if seconds > _MAX_UNIX:
            seconds /= 1000
        if not _MIN_UNIX <= seconds <= _MAX_UNIX:
            return None
        return datetime.fromtimestamp(int(seconds), UTC)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if not 2000 <= moment.year < 2100:
        return None
    return moment.astimezone(UTC)


def answer_postback(
    outcome: Outcome,
    *,
    reason: str = "",
    silent: bool = False,
    return_text: str | None = None,
    ignored_status_code: int = 200,
) -> Answer:
    """The HTTP answer: `return` text (or a GIF for `img`) or "OK"; `ERROR: reason` if ignored."""
    if outcome is Outcome.IGNORED and not silent:
        return Answer(
            status=ignored_status_code,
            content_type="text/plain; charset=utf-8",
            body=f"ERROR: {reason}".encode(),
        )
    if return_text is not None and return_text.strip().lower() == "img":
        return Answer(status=200, content_type="image/gif", body=GIF_PIXEL)
    text = return_text if return_text else "OK"
    return Answer(status=200, content_type="text/plain; charset=utf-8", body=text.encode())


def _trainings(params: Mapping[str, str]) -> tuple[dict[str, tuple[str, ...]], tuple[str, ...]]:
    trainings: dict[str, tuple[str, ...]] = {}
    for name, value in params.items():
        match = _TRAINING.fullmatch(name)
        if match and name != "ignore_status":
            trainings[match.group(1)] = split_words(value)
    return trainings, split_words(params.get("ignore_status", ""))


def _json_pairs(body: bytes) -> list[tuple[str, str]]:
    try:
        # Numbers stay text so that payouts never pass through float.
        data = json.loads(body, parse_float=str, parse_int=str, parse_constant=str)
    except (ValueError, RecursionError):
        return []
    if not isinstance(data, dict):
        return []
    pairs: list[tuple[str, str]] = []
    for name, value in data.items():
        if len(pairs) >= MAX_PARAMS:
            break
        if not name or len(name) > MAX_NAME_CHARS:
            continue
        pairs.append((name, _json_text(value)[:MAX_VALUE_CHARS]))
    return pairs


def _json_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, Sequence):
        # `{"payout": [10, 2.5]}` reads like `payout=10,2.5`.
        return ",".join(_json_text(item) for item in value)
    return json.dumps(value, ensure_ascii=False)[:MAX_VALUE_CHARS]
