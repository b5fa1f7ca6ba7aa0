"""The admin UI's template picker: it suggests as one types and takes a name, part of one or a
domain as readily as a key, over HTTP against a real server."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from tests.conftest import Server
from tests.integration.test_users import Browserless, web  # noqa: F401  (the fixture)

NEW_SOURCE = "/admin/traffic-sources/new"


@pytest.fixture
def client(web: Server) -> Browserless:  # noqa: F811
    """Alice, logged in."""
    browser = Browserless(web)
    assert browser.login("alice", "correct horse")[0] == 303
    return browser


@pytest.mark.parametrize(
    ("typed", "field"),
    [
        ("exoclick", "field_goal_id"),
        ("ExoClick", "field_goal_id"),
        ("  propeller ", "field_aid"),
        ("zeropark.com", "field_postback_key"),
        ("TRAFFIC STARS", "field_key"),
    ],
)
def test_a_name_part_or_domain_opens_the_template(
    client: Browserless, typed: str, field: str
) -> None:
    """What a user types, in any case and with spaces, resolves to the one matching template."""
    status, _, page = client.request("GET", f"{NEW_SOURCE}?template={quote(typed)}")
    assert status == 200
    assert f'name="{field}"' in page


def test_the_template_form_shows_where_the_template_came_from(client: Browserless) -> None:
    """The chosen template's page links the documentation it was checked against, and when."""
    _, _, page = client.request("GET", f"{NEW_SOURCE}?template=taboola")
    assert 'href="https://developers.taboola.com/pixel/docs/the-postback-url"' in page
    assert "(checked 2026-12-04)" in page
    _, _, page = client.request("GET", f"{NEW_SOURCE}?template=7searchcom")
    assert "not checked against the source&#39;s documentation" in page


def test_an_ambiguous_text_lists_the_matches_instead_of_failing(client: Browserless) -> None:
    """Several matches are offered as links to each template, never a 404."""
    status, _, page = client.request("GET", f"{NEW_SOURCE}?template=trident")
    assert status == 200
    assert "templates match “trident”" in page
    assert '<a href="?template=trident_media_agency_pwa">' in page
    assert 'name="field_' not in page


def test_an_unknown_text_says_so_on_the_blank_form(client: Browserless) -> None:
    """A text that matches nothing answers the form with a message, not a 404 page."""
    status, _, page = client.request("GET", f"{NEW_SOURCE}?template=no%20such%20source")
    assert status == 200
    assert "No template matches “no such source”" in page
    assert 'name="postback_url"' in page


def test_the_picker_suggests_every_template_with_its_name_and_domain(
    client: Browserless,
) -> None:
    """The datalist the browser filters as one types carries key, name and domain."""
    _, _, page = client.request("GET", NEW_SOURCE)
    assert 'list="template-list"' in page
    assert '<option value="propellerads" label="PropellerAds · propellerads.com">' in page
    assert '<option value="exoclick" label="ExoClick · exoclick.com">' in page


def test_a_source_is_created_from_a_typed_name(client: Browserless) -> None:
    """Posting the template's form reached by its name creates the source from that template."""
    path = f"{NEW_SOURCE}?template=PropellerAds"
    form = {"csrf": client.csrf(path), "field_aid": "4242", "field_tid": "777"}
    status, headers, _ = client.request("POST", path, form)
    assert status == 303
    _, _, created = client.request("GET", headers["location"])
    assert "aid=4242&amp;pid=&amp;tid=777" in created
