"""No admin page is a dead end: every error page, against a real server, says what went wrong
and links to the next step (the section's list, the page without its filters, the log-in), in
the admin's layout and under its Content-Security-Policy."""

from __future__ import annotations

import html
import re

import pytest

from tests.conftest import Server
from tests.e2e.test_admin_answers import Admin, admin  # noqa: F401 (a fixture)
from tests.e2e.test_clicks import request

pytestmark = pytest.mark.slow


def _next_steps(page: str) -> list[str]:
    """The links of the page's "next steps" paragraph."""
    found = re.search(r'<p class="next-steps">(.*?)</p>', page, re.S)
    assert found, page
    return re.findall(r'href="([^"]+)"', found.group(1))


# (method, path, status, a phrase of the message, the first next step)
ERRORS = [
    ("GET", "/no-such-page", 404, "no page at this address", "/admin/"),
    ("GET", "/campaigns/999999", 404, "Campaign not found: 999999. It was", "/admin/campaigns"),
    ("GET", "/campaigns/abc", 404, "no page at this address", "/admin/campaigns"),
    ("GET", "/offers/999999", 404, "Offer not found", "/admin/offers"),
    ("GET", "/deliveries/999999", 404, "Delivery not found", "/admin/deliveries"),
    ("GET", "/conversions/999999", 404, "Conversion not found", "/admin/conversions"),
    ("GET", "/reports/saved/999999", 404, "Saved report not found", "/admin/reports"),
    ("GET", "/clicks?from=yesterday", 422, "filter", "/admin/clicks"),
    ("GET", "/deliveries/resend-failed", 405, "does not take a GET request", "/admin/deliveries"),
    ("POST", "/campaigns/new", 403, "Reload the page and retry", "/admin/campaigns"),
]


def test_every_error_page_offers_a_next_step(admin: Admin) -> None:  # noqa: F811 (fixture)
    """Each error in ERRORS: its status, its message, the next step first and the dashboard
    last, in the layout with the menu, under the CSP (and a 405 keeps its `Allow`)."""
    wrong = {}
    for method, path, status, phrase, first in ERRORS:
        form = {"csrf": "stale"} if method == "POST" else None
        got, headers, page = admin.call(method, path, form)
        steps = _next_steps(page)
        seen = (
            got,
            phrase in html.unescape(page),
            steps[0],
            steps[-1],
            'class="side"' in page,
            "script-src 'self'" in headers["content-security-policy"],
            headers.get("allow"),
        )
        if seen != (status, True, first, "/admin/", True, True, "POST" if status == 405 else None):
            wrong[f"{method} {path}"] = seen
    assert wrong == {}


def test_an_unknown_address_sends_a_visitor_to_log_in(server: Server) -> None:
    """Without a session the error page is the bare log-in card, still with its next step."""
    status, headers, body = request(server, "GET", "/admin/no-such-page")
    page = body.decode()
    assert status == 404
    assert _next_steps(page) == ["/admin/login"]
    assert 'class="side"' not in page
    assert "default-src 'self'" in headers["content-security-policy"]
