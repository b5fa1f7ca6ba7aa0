"""The demo campaign's stand-in offer page, `/_demo/offer`: there only while the demo is.

It reports the sale itself, server-side through the postback service, so the page never needs
(or shows) the postback key.
"""

from __future__ import annotations

import asyncio
import html
import logging
from datetime import UTC, datetime
from urllib.parse import parse_qs

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from clickloop.errors import StorageUnavailable
from clickloop.http.postbacks import read_body
from clickloop.http.responses import HTML, NO_STORE, Receive, Scope, Send, send_response, send_text
from clickloop.services.config import TrackerConfig
from clickloop.services.demo import DEMO_OFFER_PATH, DEMO_PAYOUT, demo_is_set_up, record_demo_sale

log = logging.getLogger(__name__)

_HEAD = "<!doctype html><meta charset=utf-8><title>clickloop demo offer</title><h1>Demo offer</h1>"


async def demo_offer(
    engine: Engine, config: TrackerConfig, scope: Scope, receive: Receive, send: Send
) -> None:
    method = scope["method"]
    if not demo_is_set_up(config):
        await send_text(send, 404, "Not Found", head=method == "HEAD")
        return
    if method in ("GET", "HEAD"):
        subid = _first(scope["query_string"], "subid")
        await _page(send, 200, _offer(subid), head=method == "HEAD")
    elif method == "POST":
        body = await read_body(receive)
        if body is None:  # the client left before its whole body arrived
            return
        subid = _first(body, "subid")
        try:
            result = await asyncio.to_thread(record_demo_sale, engine, subid, now=datetime.now(UTC))
        except (StorageUnavailable, SQLAlchemyError) as exc:
            log.warning("demo sale not recorded: %s", exc)
            await send_text(send, 503, "Temporarily unavailable", [(b"retry-after", b"5")])
            return
        if result is None:
            await _page(send, 404, "<p>That is not a click of the demo campaign.</p>")
            return
        shown = html.escape(subid)
        await _page(
            send,
            200,
            f"<p>The network's postback for click <code>{shown}</code> was processed: "
            f"<strong>{html.escape(result.outcome.value)}</strong>"
            f"{html.escape(f' ({result.reason})' if result.reason else '')}.</p>"
            '<p>See the conversion in the admin UI: <a href="/admin/conversions">Conversions</a>'
            ' and <a href="/admin/received-postbacks">Received postbacks</a>.</p>',
        )
    else:
        await send_text(send, 405, "Method Not Allowed", [(b"allow", b"GET, HEAD, POST")])


def _offer(subid: str) -> str:
    shown = html.escape(subid)
    return (
        f"<p>You arrived through clickloop. Your click id (subid) is <code>{shown}</code>.</p>"
        "<p>An affiliate network would now report the sale with a postback:</p>"
        f'<form method="post" action="{DEMO_OFFER_PATH}">'
        f'<input type="hidden" name="subid" value="{shown}">'
        f"<button>Report the sale ({DEMO_PAYOUT})</button></form>"
    )


async def _page(send: Send, status: int, body: str, *, head: bool = False) -> None:
    await send_response(send, status, (_HEAD + body).encode(), [HTML, NO_STORE], head=head)


def _first(encoded: bytes, name: str) -> str:
    values = parse_qs(encoded.decode("latin-1")).get(name, [""])
    return values[0][:64]
