"""Query parameters of the API's endpoints and the admin pages' filters, read by one set of rules:
a value the API refuses with 422 the UI refuses too, and none reaches the database unchecked.

Each reader returns None for an absent or empty parameter and raises InvalidInput naming it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from datetime import UTC, date, datetime

from clickloop.domain.postbacks import Outcome
from clickloop.errors import InvalidInput
from clickloop.services.queries import MAX_ID

MAX_TEXT = 200
Params = Mapping[str, str]


def refuse_nul(items: Iterable[tuple[str, str]]) -> None:
    """PostgreSQL text cannot hold NUL: a query carrying one is refused before any lookup."""
    for name, value in items:
        if "\x00" in name or "\x00" in value:
            raise InvalidInput(name.replace("\x00", "%00"), "cannot contain NUL (%00)")


def refuse_unknown(names: Iterable[str], known: Collection[str]) -> None:
    for name in names:
        if name not in known:
            accepted = ", ".join(sorted(known)) or "none"
            raise InvalidInput(name, f"unknown parameter {name!r} (this one takes: {accepted})")


def text(params: Params, name: str, *, max_length: int = MAX_TEXT) -> str | None:
    """Text without its surrounding spaces, at most `max_length` characters."""
    value = (params.get(name) or "").strip()
    if "\x00" in value:
        raise InvalidInput(name, "cannot contain NUL (%00)")
    if len(value) > max_length:
        raise InvalidInput(name, f"at most {max_length} characters")
    return value or None


def choice(params: Params, name: str, options: Collection[str]) -> str | None:
    value = params.get(name) or None
    if value is not None and value not in options:
        raise InvalidInput(name, f"one of {', '.join(options)}")
    return value


def whole_number(params: Params, name: str) -> int | None:
    value = params.get(name)
    if not value:
        return None
    # Ids are 32-bit: a larger number would fail in the database (mid-stream, for a CSV export).
    if not (value.isascii() and value.isdigit()) or len(value) > 10 or int(value) > MAX_ID:
        raise InvalidInput(name, f"a whole number from 0 to {MAX_ID}")
    return int(value)


def day(params: Params, name: str) -> date | None:
    value = params.get(name)
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise InvalidInput(name, "a date as YYYY-MM-DD") from exc


def moment(params: Params, name: str) -> datetime | None:
    value = params.get(name)
    if not value:
        return None
    try:
        found = datetime.fromisoformat(value)
    except ValueError as exc:
        raise InvalidInput(name, "an ISO 8601 date or time") from exc
    return found if found.tzinfo else found.replace(tzinfo=UTC)


def cursor(params: Params) -> str | None:
    """The cursor as given (the listing checks its form against the key it continues from)."""
    value = params.get("cursor") or None
    if value is not None and len(value) > 64:
        raise InvalidInput("cursor", "not a cursor from a previous page")
    return value


def received_filters(query: Params) -> dict[str, str | None]:
    """The received-postback log's filters, as the API, the admin page and its bulk re-process
    read them."""
    return {
        "outcome": choice(query, "outcome", [str(outcome) for outcome in Outcome]),
        "reason": text(query, "reason"),
        "subid": text(query, "subid", max_length=64),
    }
