"""Rendered S2S URLs are sent with their escapes intact and only invalid characters escaped."""

from __future__ import annotations

import pytest

from clickloop.sender.delivery import escape_url


@pytest.mark.parametrize(
    ("url", "sent"),
    [
        (
            "https://a.example/p?k=a%2Fb&t=Camp%20%26%20Co:sale",
            "https://a.example/p?k=a%2Fb&t=Camp%20%26%20Co:sale",
        ),
        ("https://a.example/p?k=blue shoes", "https://a.example/p?k=blue%20shoes"),
        ("https://a.example/p?city=Köln", "https://a.example/p?city=K%C3%B6ln"),
        ('https://a.example/p?q={x}|"y"<z>', "https://a.example/p?q=%7Bx%7D%7C%22y%22%3Cz%3E"),
        ("https://u:p@[2001:db8::1]:8443/a;b?c=d#f", "https://u:p@[2001:db8::1]:8443/a;b?c=d#f"),
    ],
)
def test_escape_url(url: str, sent: str) -> None:
    """Existing escapes and reserved characters stay; spaces, quotes, non-ASCII are escaped."""
    assert escape_url(url) == sent
