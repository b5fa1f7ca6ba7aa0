"""The click hot path: `GET /{alias}?…` records the click durably, then answers 302 to the offer."""

from __future__ import annotations

import logging
import random
import re
import secrets
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from prometheus_client import Counter

from clickloop.domain.clicks import (
    MAX_VALUE_CHARS,
    choose_offer,
    first_header_address,
    map_params,
    new_subid,
    parse_query,
)
from clickloop.domain.costs import cost_at_click
from clickloop.domain.macros import render
from clickloop.errors import StorageUnavailable
from clickloop.http.metrics import Tally
from clickloop.http.responses import HTML, NO_STORE, Scope, Send, send_response, send_text
from clickloop.logs import Outage
from clickloop.services.config import CampaignView, TrackerConfig
from clickloop.services.visitors import country_of, enrich_click
from clickloop.storage import tables as t
from clickloop.storage.writer import GroupCommitWriter

log = logging.getLogger(__name__)

SUBID_COOKIE = "_subid"
COOKIE_MAX_AGE = 30 * 24 * 3600
# Characters left as they are when making the rendered offer URL header-safe: everything that
# is legal in a URL, including '%' so that existing escapes survive. Controls, spaces and
# non-ASCII are percent-encoded, so no value can split the Location header.
_URL_SAFE = "!#$%&'()*+,-./:;=?@[]~_"
_URL_UNSAFE = re.compile(r"[^A-Za-z0-9" + re.escape(_URL_SAFE) + "]")

CLICKS = Counter("clickloop_clicks_total", "Campaign link requests by outcome", ["outcome"])
# Bound once: `labels()` looks the child up under a lock on every call.
_REDIRECTED = Tally(CLICKS.labels("redirected"))
_UNKNOWN_ALIAS = Tally(CLICKS.labels("unknown_alias"))
_NO_OFFER = Tally(CLICKS.labels("no_offer"))
_STORAGE_UNAVAILABLE = Tally(CLICKS.labels("storage_unavailable"))
NOT_FOUND_PAGE = b"<!doctype html><title>Not found</title><p>This link is not active.</p>"
_RETRY_AFTER = (b"retry-after", b"1")


class ClickHandler:
    """Serves campaign links from the in-memory config; writes through the group-commit writer."""

    def __init__(
        self, writer: GroupCommitWriter, *, trusted_proxy_header: str, outage: Outage
    ) -> None:
        self._writer = writer
        self._outage = outage
        self._proxy_header = trusted_proxy_header.lower().encode()
        self._rng = random.Random(secrets.randbits(64))

    async def handle(self, scope: Scope, send: Send, config: TrackerConfig, alias: str) -> None:
        method = scope["method"]
        campaign = config.campaigns.get(alias)
        if campaign is None or not campaign.active:
            _UNKNOWN_ALIAS.inc()
            await send_response(send, 404, NOT_FOUND_PAGE, [HTML, NO_STORE], head=method == "HEAD")
            return
        if method == "HEAD":
            # Link checkers and prefetchers: confirm the link lives without counting a click.
            await send_response(send, 200, b"", [NO_STORE], head=True)
            return
        offer_id = choose_offer(campaign.offers, self._rng)
        offer = config.offers.get(offer_id) if offer_id is not None else None
        if offer is None:
            _NO_OFFER.inc()
            await send_text(send, 404, "This campaign has no active offer.")
            return
        now = datetime.now(UTC)
        row = self._click_row(scope, campaign, offer.id, now)
        values = _MacroValues(row, campaign, offer.name)
        location = _header_safe(render(offer.url, values, now=now, rng=self._rng).text)
        try:
            # Durable before the redirect: this returns once the batch holding the row committed.
            await self._writer.insert(t.clicks, row, enrich_click)
        except Exception as exc:  # StorageUnavailable, or a row the database refused
            _STORAGE_UNAVAILABLE.inc()
            if isinstance(exc, StorageUnavailable):
                self._outage.failed(exc)
            else:
                log.warning("click not recorded: %s", exc, exc_info=True)
            await send_text(send, 503, "Temporarily unavailable", [_RETRY_AFTER])
            return
        if self._outage.down:
            self._outage.recovered()
        _REDIRECTED.inc()
        cookie = f"{SUBID_COOKIE}={row['subid']}; Path=/; Max-Age={COOKIE_MAX_AGE}; SameSite=Lax"
        await send_response(
            send,
            302,
            b"",
            [(b"location", location.encode()), NO_STORE, (b"set-cookie", cookie.encode())],
        )

    def _click_row(
        self, scope: Scope, campaign: CampaignView, offer_id: int, now: datetime
    ) -> dict[str, Any]:
        mapped = map_params(parse_query(scope["query_string"]), campaign.fields_by_param)
        # One pass over the headers for the four this needs (a lookup each would scan four times).
        wanted = self._proxy_header
        user_agent = referrer = accept_language = forwarded = b""
        for key, value in scope["headers"]:
            if key == b"user-agent":
                user_agent = user_agent or value
            elif key == b"referer":
                referrer = referrer or value
            elif key == b"accept-language":
                accept_language = accept_language or value
            elif key == wanted:
                forwarded = forwarded or value
        ip = first_header_address(_text(forwarded)) if forwarded else None
        if ip is None:
            client = scope.get("client")
            ip = str(client[0])[:45] if client else None
        # The click fields the link set, then those every click has: the columns left out are
        # NULL, and each value costs the writer time, so a row holds no more than it sets.
        return {
            **mapped.fields,
            "subid": new_subid(int(time.time() * 1000), self._rng.getrandbits(64)),
            "created_at": now,
            "campaign_id": campaign.id,
            "offer_id": offer_id,
            "traffic_source_id": campaign.traffic_source_id,
            "cost": cost_at_click(
                campaign.cost_model, campaign.cost_value, mapped.fields.get("cost")
            ),
            "extra": mapped.extra or None,
            "ip": ip,
            "user_agent": _text(user_agent)[:MAX_VALUE_CHARS] or None,
            "referrer": _text(referrer)[:MAX_VALUE_CHARS] or None,
            "language": _language(_text(accept_language)) if accept_language else None,
            "country": country_of(ip or ""),
        }


# The click columns an offer URL's macros can name (an unset one renders empty, not unknown).
_COLUMNS = tuple(column.name for column in t.clicks.columns if column.name != "extra")
_IS_COLUMN = frozenset(_COLUMNS)


def _text(value: bytes) -> str:
    """A header value decoded leniently, without NUL."""
    text = bytes(value).decode("latin-1")
    return text.replace("\x00", "") if "\x00" in text else text


def _language(accept_language: str) -> str | None:
    first = accept_language.split(",", 1)[0].split(";", 1)[0].strip()
    return first[:64] or None


class _MacroValues(Mapping[str, Any]):
    """The values an offer URL's macros see: the click row, its custom parameters, the campaign.

    Looked up lazily: an offer URL uses a handful of the ~60 names, so building a dict of all
    of them for every click would cost more than the rendering.
    """

    __slots__ = ("_campaign", "_extra", "_offer_name", "_row")

    def __init__(self, row: dict[str, Any], campaign: CampaignView, offer_name: str) -> None:
        self._row = row
        self._extra: dict[str, Any] = row["extra"] or {}
        self._campaign = campaign
        self._offer_name = offer_name

    def get(self, key: str, default: Any = None) -> Any:
        if key in _CAMPAIGN_MACROS:
            return self._derived(key)
        if key in _IS_COLUMN:
            return self._row.get(key)
        return self._extra.get(key, default)

    def __getitem__(self, key: str) -> Any:
        missing = object()
        value = self.get(key, missing)
        if value is missing:
            raise KeyError(key)
        return value

    def __iter__(self) -> Iterator[str]:
        names = dict.fromkeys(self._extra)
        names.update(dict.fromkeys(_COLUMNS))
        names.update(dict.fromkeys(_CAMPAIGN_MACROS))
        return iter(names)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def _derived(self, key: str) -> Any:
        if key == "date":
            return self._row["created_at"]
        if key == "campaign_id":
            return self._campaign.id
        if key == "campaign_name":
            return self._campaign.name
        if key == "ts_id":
            return self._campaign.traffic_source_id
        return self._offer_name


_CAMPAIGN_MACROS = frozenset({"date", "campaign_id", "campaign_name", "ts_id", "offer_name"})


def _header_safe(url: str) -> str:
    if _URL_UNSAFE.search(url) is None:
        return url  # the usual case: macro values are already percent-encoded by render
    return quote(url, safe=_URL_SAFE)
