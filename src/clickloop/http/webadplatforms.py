"""Admin pages for the ad platforms: a Meta or TikTok conversion API target added to a campaign
or made a traffic source's S2S target, and Google Ads' offline conversion import file."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from clickloop.errors import InvalidInput, NotFound
from clickloop.http import params
from clickloop.http.csvexport import csv_rows
from clickloop.http.webcore import Web, session_of
from clickloop.services import adplatforms, entities, exports

_PRESET_FIELDS = ("platform", "pixel_id", "access_token", "test_event_code", "event_source_url")


class AdPlatformPages:
    """The "Ad platform conversion API" forms of the campaign and traffic source pages, and the
    Google Ads export."""

    def __init__(self, web: Web) -> None:
        self.web = web

    async def add_campaign_postback(self, request: Request) -> Response:
        return await self._apply(
            request,
            adplatforms.add_campaign_postback,
            f"/campaigns/{int(request.path_params['id'])}",
            "Conversion API postback added.",
        )

    async def set_source_postback(self, request: Request) -> Response:
        return await self._apply(
            request,
            adplatforms.set_source_postback,
            f"/traffic-sources/{int(request.path_params['id'])}",
            "The S2S target is now the conversion API.",
        )

    async def _apply(
        self, request: Request, use_case: Callable[..., Any], back: str, done: str
    ) -> Response:
        session = session_of(request)
        form = await request.form()
        fields = {name: str(form.get(name, "")).strip() for name in _PRESET_FIELDS}
        fields["statuses"] = str(form.get("statuses", ""))
        try:
            await self.web.run(
                use_case,
                self.web.engine,
                int(request.path_params["id"]),
                fields,
                now=datetime.now(UTC),
            )
        except (InvalidInput, NotFound) as exc:
            session.flash(str(exc), "error")
            return self.web.redirect(request, session, back)
        await self.web.on_change()
        return self.web.redirect(request, session, back, done)

    async def export_google_ads(self, request: Request) -> Response:
        query = request.query_params
        settings = await self.web.run(entities.get_settings, self.web.engine)
        try:
            export = exports.google_ads_export(
                conversion_name=params.text(query, "conversion_name", max_length=100),
                date_from=params.day(query, "from"),
                date_to=params.day(query, "to"),
                statuses=params.text(query, "statuses"),
                campaign_id=params.whole_number(query, "campaign_id"),
                timezone=settings["timezone"],
                today=datetime.now(ZoneInfo(settings["timezone"])).date(),
            )
        except InvalidInput as exc:
            session = session_of(request)
            session.flash(str(exc), "error")
            return self.web.redirect(request, session, "/conversions")
        return StreamingResponse(
            csv_rows(exports.google_ads_rows(self.web.engine, export), exports.GOOGLE_ADS_COLUMNS),
            media_type="text/csv; charset=utf-8",
            headers={"content-disposition": 'attachment; filename="google-ads-conversions.csv"'},
        )
