"""The exchange-rates page: every rate in force with its date and origin, a rate set by hand,
and "update now" from the ECB file (the same code path as `clickloop rates update`)."""

from __future__ import annotations

from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import Response

from clickloop.errors import ConfigError, InvalidInput
from clickloop.http.webcore import Web, session_of, zone_of
from clickloop.services import entities, rate_updates, rates

ORIGINS = {"bundled": "bundled", "ecb": "ECB", "manual": "by hand"}


class RatePages:
    def __init__(self, web: Web) -> None:
        self.web = web

    async def rates(self, request: Request) -> Response:
        """The page (GET), or a rate set by hand (POST)."""
        if request.method == "POST":
            return await self._set_rate(request)
        web = self.web
        settings = await web.run(entities.get_settings, web.engine)
        rows = await web.run(rates.list_rates, web.engine)
        return web.render(
            request,
            session_of(request),
            "rates.html",
            section="rates",
            rates=rows,
            origins=ORIGINS,
            update=await web.run(rate_updates.read_status, web.engine),
            schedule=web.rates,
            currency=settings["currency"],
            zone=zone_of(settings),
            error=None,
        )

    async def _set_rate(self, request: Request) -> Response:
        web = self.web
        session = session_of(request)
        form = await request.form()
        try:
            row = await web.run(
                rates.set_rate,
                web.engine,
                str(form.get("currency", "")),
                str(form.get("per_eur", "")),
                now=datetime.now(UTC),
            )
        except InvalidInput as exc:
            session.flash(f"Rate not set: {exc.reason}.", "error")
            return web.redirect(request, session, "/rates")
        await web.on_change()
        return web.redirect(
            request, session, "/rates", f"1 EUR = {row.per_eur} {row.currency}, set by hand."
        )

    async def update_now(self, request: Request) -> Response:
        web = self.web
        session = session_of(request)
        try:
            written = await web.run(
                rate_updates.update_now,
                web.engine,
                now=datetime.now(UTC),
                url=web.rates.url,
                timeout=web.rates.timeout,
            )
        except ConfigError as exc:
            session.flash(f"The update failed, the rates in force are kept: {exc}", "error")
            return web.redirect(request, session, "/rates")
        await web.on_change()
        as_of = written[0].as_of if written else "-"
        return web.redirect(
            request,
            session,
            "/rates",
            f"Stored {len(written)} ECB rates of {as_of}; rates set by hand were kept.",
        )
