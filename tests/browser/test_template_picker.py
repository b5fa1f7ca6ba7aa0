"""The template picker in a real browser: the datalist it types into, a name instead of a key,
and a choice among several matches."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.conftest import ADMIN_PASSWORD, ADMIN_USER
from tests.conftest import Server

pytestmark = pytest.mark.slow


def test_picker_takes_what_a_user_types(admin: Server, browser: Any) -> None:
    """Typing "ExoClick" opens ExoClick's form; typing "trident" offers its templates to pick."""
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    admin_url = f"{admin.base_url}/admin"
    page.goto(f"{admin_url}/login")
    page.fill("input[name=username]", ADMIN_USER)
    page.fill("input[name=password]", ADMIN_PASSWORD)
    page.click("button:has-text('Log in')")
    page.goto(f"{admin_url}/traffic-sources/new")
    picker = page.locator("input[name=template]")
    assert picker.get_attribute("list") == "template-list"
    assert page.locator("#template-list option[value=propellerads]").count() == 1

    picker.fill("ExoClick")
    page.click("button:has-text('Use template')")
    assert "From the template “ExoClick”" in page.inner_text("main")
    assert page.locator("input[name=field_goal_id]").count() == 1

    page.goto(f"{admin_url}/traffic-sources/new")
    page.fill("input[name=template]", "trident")
    page.click("button:has-text('Use template')")
    assert "templates match “trident”" in page.inner_text("main")
    page.click("a:has-text('Trident-media.agency | PWA')")
    assert "From the template “Trident-media.agency | PWA”" in page.inner_text("main")
    assert errors == []
