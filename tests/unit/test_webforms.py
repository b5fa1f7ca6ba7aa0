"""Admin form fields → service arguments: repeated rows, settings text, the postback builder."""

from __future__ import annotations

import pytest
from starlette.datastructures import FormData

from clickloop.errors import InvalidInput
from clickloop.http import webforms
from clickloop.services import entities
from clickloop.services.campaigns import campaign_link


def test_campaign_rows_drop_blank_rows_and_default_the_weight() -> None:
    """Offer rows without an offer are dropped, an empty weight is 100; blank postbacks go too."""
    form = FormData(
        [
            ("name", " Summer "),
            ("alias", "summer"),
            ("traffic_source_id", "3"),
            ("offer_id", "7"),
            ("offer_weight", "30"),
            ("offer_id", "8"),
            ("offer_weight", ""),
            ("offer_id", ""),
            ("offer_weight", "100"),
            ("pb_url", "https://crm.example/pb?c={subid}"),
            ("pb_method", "POST"),
            ("pb_statuses", "sale, rejected"),
            ("pb_url", ""),
            ("pb_method", "GET"),
            ("pb_statuses", ""),
        ]
    )
    values = webforms.campaign(form)
    assert values["name"] == "Summer"
    assert values["traffic_source_id"] == 3
    assert values["offers"] == [(7, 30), (8, 100)]
    assert values["postbacks"] == [
        {
            "url": "https://crm.example/pb?c={subid}",
            "method": "POST",
            "statuses": "sale, rejected",
            "body": None,
            "headers": None,
        }
    ]


def test_campaign_postback_keeps_its_body_and_headers() -> None:
    """A postback's JSON body and headers (an ad platform's) survive saving the form."""
    form = FormData(
        [
            ("pb_url", "https://tt.example/event/track/"),
            ("pb_method", "POST"),
            ("pb_statuses", "sale"),
            ("pb_body", '{"v": {payout}}'),
            ("pb_headers", '{"Access-Token": "abc"}'),
        ]
    )
    [postback] = webforms.campaign(form)["postbacks"]
    assert postback["body"] == '{"v": {payout}}'
    assert postback["headers"] == {"Access-Token": "abc"}


@pytest.mark.parametrize("weight", ["-1", "ten", "1e3"])
def test_campaign_weight_that_is_not_a_whole_number_is_refused(weight: str) -> None:
    """A weight that is not a whole number is an InvalidInput naming the weight."""
    form = FormData([("offer_id", "1"), ("offer_weight", weight)])
    with pytest.raises(InvalidInput, match="weight"):
        webforms.campaign(form)


def test_traffic_source_parameter_rows_and_statuses() -> None:
    """Parameter rows become {name, param, macro}; unchecked statuses mean an empty list."""
    form = FormData(
        [
            ("name", "Push"),
            ("param_name", "external_id"),
            ("param_param", "clickid"),
            ("param_macro", "{click_id}"),
            ("param_name", ""),
            ("param_param", ""),
            ("param_macro", ""),
            ("postback_url", ""),
        ]
    )
    values = webforms.traffic_source(form)
    assert values["parameters"] == [
        {"name": "external_id", "param": "clickid", "macro": "{click_id}"}
    ]
    assert values["postback_url"] is None
    assert values["postback_statuses"] == []


def test_network_trainings_keep_only_filled_types() -> None:
    """Training fields become {type: [words]}, empty ones left out."""
    form = FormData([("name", "N"), ("training_sale", "approved, paid"), ("training_lead", " ")])
    assert webforms.network(form)["status_trainings"] == {"sale": ["approved", "paid"]}


def test_settings_text_round_trips() -> None:
    """Settings shown as text and submitted unchanged give back the same settings."""
    stored = {
        "currency": "EUR",
        "timezone": "Europe/Berlin",
        "aliases": {"clickid": "subid", "type": "status"},
        "status_trainings": {"sale": ["approved", "paid"]},
        "allowed_networks": ["10.0.0.0/8"],
        "tracking_domains": ["https://go.example.com", "https://t.example.net:8443"],
        "ignored_answer_status": 200,
    }
    form = FormData(list(webforms.settings_text(stored).items()))
    assert entities.check_settings(webforms.settings(form)) == stored


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("timezone", "Mars/Olympus"),
        ("aliases", "clickid"),
        ("aliases", "click id=subid"),
        ("status_trainings", "=approved"),
        ("allowed_networks", "10.0.0.300/8"),
        ("ignored_answer_status", "500"),
        ("ignored_answer_status", "²"),
    ],
)
def test_settings_refuse_text_they_cannot_store(field: str, value: str) -> None:
    """A bad time zone, alias line, training line, network or answer status names its field."""
    form = FormData([("currency", "USD"), (field, value)])
    with pytest.raises(InvalidInput) as raised:
        entities.check_settings(webforms.settings(form))
    assert raised.value.field == field


def test_postback_builder_adds_trainings_and_return() -> None:
    """With the options on, saved trainings and `return` are appended to the network's URL."""
    network = {"status_trainings": {"sale": ["approved", "paid"], "rejected": ["declined"]}}
    url = "https://t.example/KEY/postback?subid={sub1}&status={status}"
    built = webforms.postback_builder(url, network, {"trainings": "1", "return": "OK"})
    assert built["url"] == (url + "&rejected_status=declined&sale_status=approved,paid&return=OK")
    assert ("subid", "{sub1}") in built["parts"]
    assert webforms.postback_builder(url, network, {})["url"] == url


def test_campaign_link_keeps_the_sources_macros_raw() -> None:
    """The campaign link carries the source's macros unencoded, for the source to fill."""
    rows = [
        {"name": "external_id", "param": "clickid", "macro": "{click_id}"},
        {"name": "cost", "param": "cost", "macro": "${COST}"},
    ]
    assert campaign_link("https://t.example", "summer", rows) == (
        "https://t.example/summer?clickid={click_id}&cost=${COST}"
    )
    assert campaign_link("https://t.example", "summer", []) == "https://t.example/summer"


def test_postback_builder_replaces_trainings_the_url_carries_already() -> None:
    """A template's postback parameters with `lead_status=…` get the saved training in their
    place, not a second `lead_status`; a `return` already there is replaced too."""
    network = {"status_trainings": {"lead": ["reg"], "sale": ["approve", "rebill"]}}
    url = "https://t.example/KEY/postback?subid={sub1}&lead_status=reg,dep&status={st}&return=X"
    built = webforms.postback_builder(url, network, {"trainings": "1", "return": "OK"})
    names = [name for name, _ in built["parts"]]
    assert names == ["subid", "status", "lead_status", "sale_status", "return"]
    assert built["url"].endswith("&lead_status=reg&sale_status=approve,rebill&return=OK")
