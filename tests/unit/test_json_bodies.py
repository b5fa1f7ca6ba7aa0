"""JSON body templates render to valid JSON: strings escaped, lone macros typed, empties left
out; header values cannot start another header; credential headers are masked whole."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from clickloop.domain.macros import MacroValue, render_header, render_json
from clickloop.domain.secrets import mask_headers, secret_header_values

NOW = datetime(2026, 11, 1, 12, 0, 5, tzinfo=UTC)
VALUES: dict[str, MacroValue] = {
    "payout": Decimal("12.50"),
    "conversion_id": 7,
    "status": "sale",
    "currency": "USD",
    "conversion_time": NOW,
    "ip": None,
    "keyword": 'say "hi"\n\\ ☃ \ud800',
    "external_id": "123",
}


def rendered(template: str) -> object:
    result = render_json(template, VALUES, now=NOW, rng=random.Random(1))
    assert result is not None
    return json.loads(result.text)


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ('{"v": {payout}}', {"v": 12.5}),
        ('{"v": "{payout}"}', {"v": "12.5"}),
        ('{"t": {conversion_time:U}}', {"t": 1793534405}),
        ('{"t": {conversion_time:Y-m-d}}', {"t": "2026-11-01"}),
        ('{"id": "{conversion_id}-{status}"}', {"id": "7-sale"}),
        ('{"n": {conversion_id}}', {"n": 7}),
        ('{"e": {external_id}}', {"e": "123"}),  # a text value stays text
        ('{"c": {currency}}', {"c": "USD"}),
        ('{"ip": {ip}, "x": {nope}, "a": [{ip}, 1]}', {"a": [1]}),
        ('{"e": {status:lead=Lead sale=Purchase}}', {"e": "Purchase"}),
        ('{"k": "{keyword}"}', {"k": 'say "hi"\n\\ ☃ ?'}),
        ('{"k": "{_keyword}"}', {"k": 'say "hi"\n\\ ☃ ?'}),
        ('{"k": {keyword}}', {"k": 'say "hi"\n\\ ☃ ?'}),
        ('{"{status}": [{"deep": {"v": {payout}}}]}', {"sale": [{"deep": {"v": 12.5}}]}),
        ('{"literal": "a { b } \\" {payout}"}', {"literal": 'a { b } " 12.5'}),
        ('{"n": 1.10, "t": true, "z": null}', {"n": 1.1, "t": True, "z": None}),
    ],
)
def test_json_body_rendering(template: str, expected: object) -> None:
    """Each rule of docs/s2s.md "JSON bodies", one template at a time."""
    assert rendered(template) == expected


def test_money_keeps_every_digit() -> None:
    """A payout is written from its Decimal, never through a float."""
    result = render_json('{"v": {payout}}', {"payout": Decimal("0.1234567890123456789")},
                         now=NOW, rng=random.Random(1))  # fmt: skip
    assert result is not None and result.text == '{"v":0.1234567890123456789}'


def test_unknown_macros_are_reported() -> None:
    """A typo in a JSON body is a warning on the delivery, as in a URL."""
    result = render_json(
        '{"a": {externa_id}, "b": "{nope}"}', VALUES, now=NOW, rng=random.Random(1)
    )
    assert result is not None and result.unknown == ("externa_id", "nope")


def test_a_template_that_is_not_json_is_left_to_the_text_renderer() -> None:
    """None tells the caller to render the template as plain text."""
    assert render_json("a={payout}&b=2", VALUES, now=NOW, rng=random.Random(1)) is None


def test_header_values_cannot_inject_headers() -> None:
    """CR, LF and other control characters in a value become spaces."""
    header = render_header("Bearer {keyword}", VALUES, now=NOW, rng=random.Random(1))
    assert "\n" not in header.text and "\r" not in header.text
    assert header.text.startswith('Bearer say "hi" \\')


def test_credential_headers_are_masked_whole() -> None:
    """Authorization, Access-Token, X-Api-Key show ***; other headers keep their text."""
    headers = {
        "Authorization": "Bearer abc123456",
        "Access-Token": "tt-999999",
        "X-Api-Key": "k-1234",
        "X-Campaign": "7",
    }
    assert mask_headers(headers) == {
        "Authorization": "***",
        "Access-Token": "***",
        "X-Api-Key": "***",
        "X-Campaign": "7",
    }
    assert secret_header_values(headers) == {
        "Bearer abc123456", "abc123456", "tt-999999", "k-1234",
    }  # fmt: skip
