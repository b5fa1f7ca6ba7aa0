"""The admin web UI under /admin: server-rendered Jinja2 pages over the same services as the API.

This module holds the routes and the log-in pages; sessions and checks are in `webcore.py`,
the pages in `webentities.py` and `weblogs.py`, form parsing in `webforms.py`.
"""

from __future__ import annotations

import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path

from sqlalchemy.engine import Engine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from clickloop.http.webcore import (
    HERE,
    Web,
    guard,
    refused,
    safe_next,
    same_token,
    session_of,
)
from clickloop.http.webentities import EntityPages
from clickloop.http.weblogs import LogPages
from clickloop.services import users

# --- the app ------------------------------------------------------------------------------


def create_web(
    engine: Engine,
    *,
    base_url: str,
    data_dir: Path,
    on_change: Callable[[], Awaitable[None]],
) -> Starlette:
    """The admin UI as a Starlette app; mount it at /admin."""
    web = Web(engine=engine, base_url=base_url.rstrip("/"), data_dir=data_dir, on_change=on_change)
    pages = AuthPages(web)
    setup = EntityPages(web)
    logs = LogPages(web)
    guarded = [
        ("/", logs.dashboard, ["GET"]),
        ("/logout", pages.logout, ["POST"]),
        ("/campaigns", setup.campaigns, ["GET"]),
        ("/campaigns/new", setup.campaign_form, ["GET", "POST"]),
        ("/campaigns/{id:int}", setup.campaign_form, ["GET", "POST"]),
        ("/campaigns/{id:int}/status", setup.campaign_status, ["POST"]),
        ("/traffic-sources", setup.traffic_sources, ["GET"]),
        ("/traffic-sources/new", setup.traffic_source_form, ["GET", "POST"]),
        ("/traffic-sources/{id:int}", setup.traffic_source_form, ["GET", "POST"]),
        ("/traffic-sources/{id:int}/reapply", setup.reapply, ["POST"]),
        ("/affiliate-networks/{id:int}/reapply", setup.reapply, ["POST"]),
        ("/affiliate-networks", setup.networks, ["GET"]),
        ("/affiliate-networks/new", setup.network_form, ["GET", "POST"]),
        ("/affiliate-networks/{id:int}", setup.network_form, ["GET", "POST"]),
        ("/offers", setup.offers, ["GET"]),
        ("/offers/new", setup.offer_form, ["GET", "POST"]),
        ("/offers/{id:int}", setup.offer_form, ["GET", "POST"]),
        ("/settings", setup.settings, ["GET", "POST"]),
        ("/settings/rotate-key", setup.rotate_key, ["POST"]),
        ("/settings/conversion-types", setup.add_type, ["POST"]),
        ("/settings/password", setup.change_password, ["POST"]),
        ("/settings/tokens", setup.create_token, ["POST"]),
        ("/settings/tokens/{id:int}/revoke", setup.revoke_token, ["POST"]),
        ("/conversions", logs.conversions, ["GET"]),
        ("/received-postbacks", logs.received, ["GET"]),
        ("/received-postbacks/{id:int}/reprocess", logs.reprocess, ["POST"]),
        ("/received-postbacks/reprocess-ignored", logs.reprocess_all, ["POST"]),
        ("/deliveries", logs.deliveries, ["GET"]),
        ("/deliveries/resend-failed", logs.resend_failed, ["POST"]),
        ("/deliveries/{id:int}", logs.delivery, ["GET"]),
        ("/deliveries/{id:int}/resend", logs.resend, ["POST"]),
        ("/targets/{kind}/{id:int}/enable", logs.enable_target, ["POST"]),
        ("/reports", logs.reports, ["GET"]),
    ]

    async def not_found(request: Request, exc: Exception) -> Response:
        return HTMLResponse("<!doctype html><title>Not found</title><p>Not found.", 404)

    return Starlette(
        routes=[
            Route("/login", pages.login, methods=["GET", "POST"]),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ]
        + [Route(path, guard(web, handler), methods=methods) for path, handler, methods in guarded],
        exception_handlers={404: not_found},
    )


class LoginThrottle:
    """Failed logins per client address: after `limit` within `window` seconds, that address is
    refused until its oldest failure leaves the window. In memory, per server process."""

    def __init__(self, *, limit: int = 10, window: float = 900.0, max_keys: int = 10000) -> None:
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        self._failures: dict[str, deque[float]] = {}

    def wait(self, key: str, now: float) -> float:
        """Seconds before `key` may try again (0 when it may now)."""
        failures = self._failures.get(key)
        if not failures:
            return 0.0
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if len(failures) < self.limit:
            return 0.0
        return failures[0] + self.window - now

    def failed(self, key: str, now: float) -> None:
        if key not in self._failures and len(self._failures) >= self.max_keys:
            # A flood of addresses must not grow memory without bound: forget the stalest.
            stalest = min(
                self._failures, key=lambda k: self._failures[k][-1] if self._failures[k] else 0
            )
            del self._failures[stalest]
        self._failures.setdefault(key, deque(maxlen=self.limit)).append(now)

    def succeeded(self, key: str) -> None:
        self._failures.pop(key, None)


class AuthPages:
    """Log in and log out."""

    def __init__(self, web: Web) -> None:
        self.web = web
        self.throttle = LoginThrottle()

    # -- login ---------------------------------------------------------------------------

    async def login(self, request: Request) -> Response:
        web = self.web
        session = web.session(request)
        next_path = safe_next(request.query_params.get("next"))
        if request.method == "GET":
            needs_user = await web.run(users.count_users, web.engine) == 0
            return web.render(
                request, session, "login.html", user=None, next=next_path, needs_user=needs_user
            )
        form = await request.form()
        if not same_token(str(form.get("csrf", "")), session.data.get("csrf")):
            return refused(web, request, session)
        username = str(form.get("username", ""))
        client = request.client.host if request.client else ""
        wait = self.throttle.wait(client, time.monotonic())
        if wait > 0:
            minutes = max(1, round(wait / 60))
            return web.render(
                request,
                session,
                "login.html",
                status=429,
                user=None,
                next=next_path,
                username=username[:100],
                error=f"Too many failed logins from your address. Try again in {minutes} min.",
                needs_user=False,
            )
        user = await web.run(
            users.authenticate, web.engine, username, str(form.get("password", ""))
        )
        if user is None:
            self.throttle.failed(client, time.monotonic())
            # One message for an unknown name and a wrong password: no username enumeration.
            return web.render(
                request,
                session,
                "login.html",
                status=401,
                user=None,
                next=next_path,
                username=username[:100],
                error="Wrong username or password.",
                needs_user=False,
            )
        self.throttle.succeeded(client)
        # A fresh token at login: one planted before login (session fixation) is not reused.
        session.data = {
            "uid": user.id,
            "stamp": user.password_stamp,
            "csrf": secrets.token_urlsafe(24),
        }
        session.dirty = True
        return web.redirect(request, session, next_path)

    async def logout(self, request: Request) -> Response:
        session = session_of(request)
        session.data = {}
        session.dirty = True
        return self.web.redirect(request, session, "/login", "You are logged out.")
