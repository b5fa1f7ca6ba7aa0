"""Admin pages for the ad platforms: a Meta or TikTok conversion API target added to a campaign,
and Google Ads' offline conversion import file downloaded."""

from __future__ import annotations

from datetime import UTC, datetime
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
    """The campaign page's "Ad platform conversion API" form and the Google Ads export."""

    def __init__(self, web: Web) -> None:
        self.web = web

    async def add_campaign_postback(self, request: Request) -> Response:
        campaign_id = int(request.path_params["id"])
        session = session_of(request)
        form = await request.form()
        fields = {name: str(form.get(name, "")).strip() for name in _PRESET_FIELDS}
        fields["statuses"] = str(form.get("statuses", ""))
        back = f"/campaigns/{campaign_id}"
        try:
            await self.web.run(
                adplatforms.add_campaign_postback,
                self.web.engine,
                campaign_id,
                fields,
                now=datetime.now(UTC),
            )
        except (InvalidInput, NotFound) as exc:
            session.flash(str(exc), "error")
            return self.web.redirect(request, session, back)
        await self.web.on_change()
        return self.web.redirect(request, session, back, "Conversion API postback added.")

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
