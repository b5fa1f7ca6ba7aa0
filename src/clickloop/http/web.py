"""The admin web UI under /admin: server-rendered Jinja2 pages over the same services as the API.

This module holds the routes and the log-in pages; sessions and checks are in `webcore.py`,
the pages in `webentities.py` and `weblogs.py`, form parsing in `webforms.py`.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from clickloop.errors import StorageUnavailable
from clickloop.http.webadplatforms import AdPlatformPages
from clickloop.http.webcampaigns import CampaignPages
from clickloop.http.webclicks import ClickPages
from clickloop.http.webcore import (
    HERE,
    Web,
    guard,
    refused,
    safe_next,
    same_token,
    session_of,
    signed_in_user,
    storage_safe,
)
from clickloop.http.webentities import EntityPages
from clickloop.http.weberrors import error_page
from clickloop.http.weblogs import LogPages
from clickloop.http.webrates import RatePages
from clickloop.http.webreports import ReportPages
from clickloop.http.webusers import UserPages
from clickloop.services import login_throttle, sessions, users
from clickloop.services.rate_updates import UpdateSettings

log = logging.getLogger(__name__)

# The only changes a read-only user (analyst) may make: to their own login.
SELF_SERVICE = frozenset({"/logout", "/settings/password"})

# --- the app ------------------------------------------------------------------------------


def create_web(
    engine: Engine,
    *,
    base_url: str,
    data_dir: Path,
    on_change: Callable[[], Awaitable[None]],
    rates: UpdateSettings | None = None,
) -> Starlette:
    """The admin UI as a Starlette app; mount it at /admin."""
    web = Web(
        engine=engine,
        base_url=base_url.rstrip("/"),
        data_dir=data_dir,
        on_change=on_change,
        rates=rates or UpdateSettings(),
    )
    pages = AuthPages(web)
    setup = EntityPages(web)
    logs = LogPages(web)
    ads = AdPlatformPages(web)
    report_pages = ReportPages(web)
    behind = ClickPages(web)
    money = RatePages(web)
    people = UserPages(web)
    campaign_pages = CampaignPages(web)
    guarded = [
        ("/", logs.dashboard, ["GET"]),
        ("/logout", pages.logout, ["POST"]),
        ("/campaigns", campaign_pages.campaigns, ["GET"]),
        ("/campaigns/bulk", campaign_pages.bulk, ["POST"]),
        ("/campaigns/new", campaign_pages.form, ["GET", "POST"]),
        ("/campaigns/{id:int}", campaign_pages.page_or_save, ["GET", "POST"]),
        ("/campaigns/{id:int}/edit", campaign_pages.form, ["GET", "POST"]),
        ("/campaigns/{id:int}/status", campaign_pages.one_action, ["POST"]),
        ("/campaigns/{id:int}/archive", campaign_pages.one_action, ["POST"]),
        ("/campaigns/{id:int}/restore", campaign_pages.one_action, ["POST"]),
        ("/campaigns/{id:int}/clone", campaign_pages.clone, ["POST"]),
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
        ("/campaigns/{id:int}/ad-platform-postbacks", ads.add_campaign_postback, ["POST"]),
        ("/traffic-sources/{id:int}/ad-platform-postback", ads.set_source_postback, ["POST"]),
        ("/exports/google-ads", ads.export_google_ads, ["GET"]),
        ("/reports", report_pages.reports, ["GET"]),
        ("/reports/saved", report_pages.save, ["POST"]),
        ("/reports/saved/{id:int}", report_pages.open_saved, ["GET"]),
        ("/reports/saved/{id:int}/rename", report_pages.rename, ["POST"]),
        ("/reports/saved/{id:int}/delete", report_pages.delete, ["POST"]),
        ("/clicks", behind.clicks, ["GET"]),
        ("/clicks/{subid}", behind.click, ["GET"]),
        ("/conversions/{id:int}", behind.conversion, ["GET"]),
        ("/conversions/{id:int}/status", behind.change_status, ["POST"]),
        ("/conversions/upload", behind.upload, ["GET", "POST"]),
        ("/deliveries/resend", logs.resend_selected, ["POST"]),
        ("/rates", money.rates, ["GET", "POST"]),
        ("/rates/update", money.update_now, ["POST"]),
        ("/users", people.users, ["GET", "POST"]),
        ("/users/{id:int}/disable", people.disable, ["POST"]),
        ("/users/{id:int}/enable", people.enable, ["POST"]),
        ("/users/{id:int}/role", people.change_role, ["POST"]),
        ("/users/{id:int}/password", people.reset_password, ["POST"]),
    ]

    return Starlette(
        routes=[
            Route("/login", storage_safe(web, pages.login), methods=["GET", "POST"]),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ]
        + [
            Route(path, guard(web, handler, self_service=path in SELF_SERVICE), methods=methods)
            for path, handler, methods in guarded
        ],
        exception_handlers={404: unrouted(web), 405: unrouted(web)},
    )


def unrouted(web: Web) -> Callable[[Request, Exception], Awaitable[Response]]:
    """The error page of an address no route takes (404) and of a method a route does not take
    (405, keeping its `Allow`), in the admin's layout for a logged-in user."""

    async def answer(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 404
        session = web.session(request)
        # Without a database the bare page, which needs none.
        with contextlib.suppress(StorageUnavailable, SQLAlchemyError):
            request.scope["clickloop_user"] = await signed_in_user(web, session)
        if status == 405:
            message = (
                f"This address does not take a {request.method} request: open the page from "
                "the menu and use its buttons and forms."
            )
        else:
            message = (
                "There is no page at this address. Check the link, or start again from the "
                "dashboard."
            )
        response = error_page(web, request, session, status=status, message=message)
        if isinstance(exc, HTTPException) and exc.headers:
            response.headers.update(exc.headers)
        return response

    return answer


class AuthPages:
    """Log in and log out."""

    def __init__(self, web: Web) -> None:
        self.web = web

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
        # Counted before the password is checked, in the database: concurrent tries, on any
        # worker or node, get no more verifications than the limit.
        wait = await web.run(
            login_throttle.count_attempt, web.engine, client, now=datetime.now(UTC)
        )
        if wait:
            log.warning(
                "login refused: too many failures from %s (user %r)", client, username[:100]
            )
            minutes = max(1, round(wait.total_seconds() / 60))
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
            log.warning("login failed: user %r from %s", username[:100], client)
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
        log.info("login: user %r from %s", user.username, client)
        await web.run(login_throttle.clear_attempts, web.engine, client)
        session_id = await web.run(
            sessions.open_session, web.engine, user.id, now=datetime.now(UTC)
        )
        # A fresh token at login: one planted before login (session fixation) is not reused.
        session.data = {"sid": session_id, "csrf": secrets.token_urlsafe(24)}
        session.dirty = True
        return web.redirect(request, session, next_path)

    async def logout(self, request: Request) -> Response:
        session = session_of(request)
        # Ended on the server: a copy of the cookie saved before is worth nothing after.
        await self.web.run(sessions.end_session, self.web.engine, str(session.data["sid"]))
        session.data = {}
        session.dirty = True
        return self.web.redirect(request, session, "/login", "You are logged out.")
