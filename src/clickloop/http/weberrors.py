"""The admin UI's error pages: each says what went wrong and offers the next step (the list the
missing thing belongs to, the page without its filters, the same page again, the dashboard).

`guard` (webcore.py) turns the errors of a page into these pages, and web.py the addresses no
route takes (404) and the methods a route does not take (405).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

if TYPE_CHECKING:  # webcore uses this module: the types only, no import cycle
    from clickloop.http.webcore import Session, Web

# The list page of each section, by the first segment of a page's path: where to look for a
# thing that is not there. A section without an entry sends to the dashboard.
LIST_PAGES = {
    "campaigns": "All campaigns",
    "offers": "All offers",
    "traffic-sources": "All traffic sources",
    "affiliate-networks": "All affiliate networks",
    "clicks": "The clicks log",
    "conversions": "All conversions",
    "received-postbacks": "All received postbacks",
    "deliveries": "All sent postbacks",
    "reports": "Reports",
    "settings": "Settings",
    "users": "All users",
    "rates": "Exchange rates",
}


def page_path(request: Request) -> str:
    """The request's path inside the admin (without the mount point)."""
    return request.url.path.removeprefix(request.scope.get("root_path", "")) or "/"


def list_page(path: str) -> tuple[str, str] | None:
    """(path, label) of the list page of the section `path` is in, when there is one."""
    section = path.strip("/").split("/", 1)[0]
    label = LIST_PAGES.get(section)
    return (f"/{section}", label) if label else None


def error_page(
    web: Web,
    request: Request,
    session: Session,
    *,
    status: int,
    message: str,
    back: tuple[str, str] | None = None,
    again: bool = False,
) -> Response:
    """The error page: `message`, then `back` (path, label) or the section's list page, the
    same page again when `again` (a GET that may work later), and the dashboard."""
    path = page_path(request)
    back = back or list_page(path)
    retry = path + (f"?{request.url.query}" if request.url.query else "") if again else None
    return web.render(
        request,
        session,
        "error.html",
        status=status,
        message=message,
        back=back[0] if back else None,
        back_label=back[1] if back else None,
        retry=retry,
    )
