"""The template catalog: schema, cleaning, rendering every S2S template, the user's own file."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from clickloop.catalog.templates import (
    CLICK_FIELDS,
    AffiliateNetworkTemplate,
    TrafficSourceTemplate,
    fill_fields,
    load_catalog,
    source_secrets,
)
from clickloop.domain.macros import render
from clickloop.errors import InvalidInput, NotFound

ROOT = Path(__file__).resolve().parents[2]
RAW_DATA = Path("/work/shared/data/templates")
NOW = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)
CATALOG = load_catalog()

# What a placeholder or a damaged macro looks like once rendered: none may survive.
LEFTOVER = re.compile(
    r"REPLACE|replace|XXX|xxx|YOUR|your[-_]|yourvalue|put_user|NAMEOFADVERTISER|UNIQUE_"
    r"|API_KEY|PROPERTY_ID|TEAM_ID|TeamName|partner_name|ACCOUNT_NAME|######|##"
    r"|externa_id|coversion_revenue|extenal|[{}\[\]<>]|\$"
)


def fill_values(template: TrafficSourceTemplate | AffiliateNetworkTemplate) -> dict[str, str]:
    """A plausible value for every field: its first choice, an amount, or an account value."""
    return {
        field.name: field.choices[0] if field.choices else f"F{index}7a9"
        for index, field in enumerate(template.fields)
    } | ({"payout": "10"} if any(f.name == "payout" for f in template.fields) else {})


def conversion_values(template: TrafficSourceTemplate) -> dict[str, Any]:
    """A realistic converted click: every macro of SPEC §4, but of the click fields only those
    the template's parameter rows capture (a field no row fills stays unknown)."""
    captured = {row.name for row in template.parameters}
    values: dict[str, Any] = {name: f"v-{name}" for name in CLICK_FIELDS & captured}
    values.update(
        subid="0GZ3kT9xQ2mZ7aB",
        ip="203.0.113.7",
        user_agent="Mozilla/5.0 (Linux; Android 14)",
        referrer="https://news.example.org/a?b=c",
        language="de",
        country="DE",
        os="Android",
        browser="Chrome",
        device_type="mobile",
        date=datetime(2026, 11, 22, 9, 1, tzinfo=UTC),
        status="sale",
        original_status="approved",
        tid="tx-77",
        payout=Decimal("12.50"),
        conversion_cost=Decimal("1.25"),
        profit=Decimal("11.25"),
        currency="USD",
        conversion_time=NOW,
        campaign_id=7,
        campaign_name="Summer DE",
        offer_id=3,
        offer_name="Flight deals",
        ts_id=2,
        traffic_source_name=template.name,
        affiliate_network_name="Some network",
    )
    for row in template.parameters:
        values.setdefault(row.name, f"v-{row.name}")
    values.update({"external_id": "ext-88421"} if "external_id" in captured else {})
    return values


def s2s_problems(template: TrafficSourceTemplate) -> list[str]:
    """Why the filled and rendered S2S URL of a template is not a sendable request."""
    if template.postback_url is None:
        return ["no postback URL"]
    filled = fill_fields(template, fill_values(template))
    assert filled.postback_url is not None
    rendered = render(
        filled.postback_url, conversion_values(template), now=NOW, rng=random.Random(6)
    )
    problems = [f"unknown macro {name}" for name in rendered.unknown]
    parts = urlsplit(rendered.text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        problems.append(f"not an http(s) URL: {rendered.text}")
    if leftover := LEFTOVER.search(rendered.text):
        problems.append(f"leftover {leftover.group()!r} in {rendered.text}")
    problems += [
        f"placeholder {field.placeholder_in_url} left"
        for field in template.fields
        if field.placeholder_in_url in rendered.text
    ]
    return problems


def network_problems(template: AffiliateNetworkTemplate) -> list[str]:
    """Why a network template, its fields filled, cannot deliver a matching postback."""
    if template.postback_params is None:
        return ["no postback"]
    filled = fill_fields(template, fill_values(template))
    offer = render(
        filled.offer_params, {"subid": "SUBID0GZ3", "source": "s"}, now=NOW, rng=random.Random()
    )
    problems = [] if "SUBID0GZ3" in offer.text else ["offer parameters do not pass {subid}"]
    problems += [
        f"offer placeholder {name}" for name in offer.unknown if "replace" in name or "#" in name
    ]
    query = filled.postback_params or ""
    for index, macro in enumerate(template.network_macros):
        query = query.replace(macro, f"n{index}x")
    params = dict(parse_qsl(query, keep_blank_values=True))
    if not re.fullmatch(r"n\d+x", params.get("subid", "")):
        problems.append(f"subid is not the network's macro: {params.get('subid')!r}")
    if not params.get("status"):
        problems.append("no status")
    if not re.fullmatch(r"(n\d+x|[\d.,-])*", params.get("payout", "")):
        problems.append(f"payout is neither a macro nor a number: {params['payout']!r}")
    params.pop("from", None)
    if leftover := LEFTOVER.search("&".join(f"{k}={v}" for k, v in params.items())):
        problems.append(f"leftover {leftover.group()!r} in {query}")
    return problems


def test_catalog_ships_every_raw_template() -> None:
    """All 196 raw traffic sources and 395 networks are in the package, plus added ones."""
    assert len(CATALOG.traffic_sources) >= 196
    assert len(CATALOG.affiliate_networks) >= 395
    raw_sources = json.loads((ROOT / "src/clickloop/catalog/traffic_sources.json").read_text())
    assert raw_sources["version"] == 1


@pytest.mark.parametrize("template", CATALOG.traffic_sources, ids=lambda t: t.key)
def test_traffic_source_s2s_renders_to_a_clean_url(template: TrafficSourceTemplate) -> None:
    """Every S2S template renders to a valid URL with no unknown macro or placeholder left,
    except exactly the ones the catalog declares defective or without a postback."""
    problems = s2s_problems(template)
    if template.defect is not None or template.postback_url is None:
        assert problems, f"{template.key} is flagged but renders cleanly: drop the flag"
        assert template.defect or template.notes
    else:
        assert problems == []


@pytest.mark.parametrize("template", CATALOG.affiliate_networks, ids=lambda t: t.key)
def test_network_template_carries_subid_and_status(template: AffiliateNetworkTemplate) -> None:
    """Every network template passes our subid out and gets it back with a status, except
    exactly the ones the catalog declares defective or without a postback."""
    problems = network_problems(template)
    if template.defect is not None or template.postback_params is None:
        assert problems, f"{template.key} is flagged but works: drop the flag"
        assert template.defect or template.notes
    else:
        assert problems == []


@pytest.mark.parametrize(
    ("key", "expected_url"),
    [
        ("mobivion_com", "https://postback.mobivion.com/?clickid={external_id}&moneyusd={payout}"),
        ("pushground", "https://lupush.com/conversion?click_id={sub_id_1}&amount={payout}"),
        (
            "traforama_com",
            "https://p.pa5ka.com/api/click/{external_id}?subid=REPLACE&c=1"
            "&cpa={conversion_revenue}",
        ),
        (
            "adxad_com",
            "http://conv.adxadserv.com/?clickid={external_id}&payout={payout}"
            "&type={status:lead=goal1 sale=goal2}",
        ),
        ("trending_bid", "http://passfiss.com/lead/dspsl/lead1?trkId={external_id}"),
    ],
)
def test_raw_defects_are_repaired(key: str, expected_url: str) -> None:
    """Macro typos and converter damage named in the data's README are fixed, not copied."""
    assert CATALOG.traffic_source(key).postback_url == expected_url


@pytest.mark.parametrize(
    ("url", "statuses"),
    [
        ("geozo_com", ("lead", "sale", "rejected")),
        ("marketgid_com", ("lead", "sale", "registration", "deposit")),
        ("evadav_com", ("sale", "deposit")),
        ("7searchcom", ()),
    ],
)
def test_default_statuses_follow_what_the_source_can_tell_apart(
    url: str, statuses: tuple[str, ...]
) -> None:
    """A status mapping sends its types, a plain {status} the positive ones, none: sales."""
    assert CATALOG.traffic_source(url).postback_statuses == statuses


def test_exoclick_preset_checks_the_response_body() -> None:
    """ExoClick answers 200 'ERROR: ...' on failure, so its template requires OK in the body."""
    exoclick = CATALOG.traffic_source("exoclick")
    assert exoclick.response_must_contain == "OK"
    assert [field.name for field in exoclick.fields] == ["goal_id"]


def test_placeholder_family_becomes_fields_with_choices() -> None:
    """The per-event status list of Affilka-style networks is a field with its words."""
    template = CATALOG.affiliate_network("12monkiss_com")
    assert {field.name: field.choices for field in template.fields} == {
        "status": ("reg", "dep", "lead", "approve", "reject", "rebill"),
        "currency": ("rub", "usd", "eur"),
    }
    filled = fill_fields(template, {"status": "dep", "currency": "usd"})
    assert filled.postback_params is not None
    assert "status=dep&" in filled.postback_params
    assert "currency=usd&" in filled.postback_params
    assert filled.fields == ()
    assert template.status_trainings["sale"] == ("approve", "rebill")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"status": "dep"}, "currency: required"),
        ({"status": "won", "currency": "usd"}, "status: must be one of"),
        ({"status": "dep", "currency": "usd", "extra": "1"}, "extra: the template has no"),
        ({"status": "dep", "currency": "us d"}, "currency: no spaces"),
        ({"status": "dep", "currency": "usd&x=1"}, "currency: no spaces"),
    ],
)
def test_fill_fields_rejects_bad_values(values: dict[str, str], message: str) -> None:
    """Missing, unknown, off-list or URL-breaking values are refused with the field named."""
    template = CATALOG.affiliate_network("12monkiss_com")
    with pytest.raises(InvalidInput, match=re.escape(message)):
        fill_fields(template, values)


@pytest.mark.parametrize(
    ("text", "first_key"),
    [("exoclick", "exoclick"), ("Traffic Stars", "trafficstars_com"), ("ADMITAD", "admitad")],
)
def test_search_ranks_exact_names_first(text: str, first_key: str) -> None:
    """Search ignores case and spacing, and an exact name is the first hit."""
    assert CATALOG.search(text)[0].key == first_key


def test_search_without_match_is_empty_and_lookup_raises() -> None:
    """An unmatched search finds nothing; an unknown key is NotFound."""
    assert CATALOG.search("no such network anywhere") == ()
    with pytest.raises(NotFound):
        CATALOG.affiliate_network("no_such_network")


def minimal_source(**overrides: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "key": "my_source",
        "name": "My source",
        "parameters": [{"name": "external_id", "param": "clickid", "macro": "{click_id}"}],
        "postback_url": "https://my.example/pb?c={external_id}&t=MY_TOKEN",
        "postback_method": "GET",
        "postback_statuses": ["sale"],
        "fields": [{"name": "token", "label": "Token", "placeholder_in_url": "MY_TOKEN"}],
    }
    entry.update(overrides)
    return entry


def minimal_network(**overrides: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "key": "my_network",
        "name": "My network",
        "offer_params": "&sub1={subid}",
        "postback_params": "subid={sub1}&status={status}&payout={sum}",
        "network_macros": ["{sub1}", "{status}", "{sum}"],
    }
    entry.update(overrides)
    return entry


def write_user_file(tmp_path: Path, document: object) -> Path:
    path = tmp_path / "templates.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("sources", "networks", "field"),
    [
        (
            [minimal_source(postback_method="PUT")],
            [],
            "traffic_sources[my_source]: postback_method",
        ),
        ([minimal_source(postback_url="my.example/pb")], [], "[my_source]: postback_url"),
        ([minimal_source(key="My Source")], [], "[My Source]: key"),
        ([minimal_source(), minimal_source()], [], "[my_source]: key"),
        ([minimal_source(colour="red")], [], "[my_source]: colour"),
        ([minimal_source(postback_statuses=["sale", ""])], [], "[my_source]: postback_statuses"),
        (
            [
                minimal_source(
                    fields=[{"name": "token", "label": "T", "placeholder_in_url": "NOPE"}]
                )
            ],
            [],
            "[my_source]: fields.token",
        ),
        (
            [
                minimal_source(
                    parameters=[
                        {"name": "external_id", "param": "c", "macro": "{a}"},
                        {"name": "sub_id_1", "param": "c", "macro": "{b}"},
                    ]
                )
            ],
            [],
            "[my_source]: parameters",
        ),
        ([], [minimal_network(postback_params="subid={sub1}")], "[my_network]: postback_params"),
        (
            [],
            [minimal_network(postback_params="subid={sub1}&status={status}&payout={sum}&x=a b")],
            "[my_network]: postback_params",
        ),
        ([minimal_source(postback_url="https://a.example/p?x=a b&t=MY_TOKEN")], [], "postback_url"),
        ([], [minimal_network(offer_params="sub1={subid}")], "[my_network]: offer_params"),
        ([], [minimal_network(network_macros=["{gone}"])], "[my_network]: network_macros"),
        ([], [minimal_network(aliases={"clickid": "nonsense"})], "[my_network]: aliases"),
        ([], [{"name": "No key"}], "affiliate_networks[0]: key"),
        (
            [
                minimal_source(
                    postback_url="https://a.example/p?t=MY_TOKEN",
                    fields=[
                        {"name": "t", "label": "T", "placeholder_in_url": "MY_TOKEN", "secret": 1}
                    ],
                )
            ],
            [],
            "[my_source]: fields[0].secret",
        ),
    ],
)
def test_user_file_is_validated_like_the_catalog(
    tmp_path: Path, sources: list[Any], networks: list[Any], field: str
) -> None:
    """A broken user template is refused with the file, the entry and the field named."""
    path = write_user_file(
        tmp_path, {"version": 1, "traffic_sources": sources, "affiliate_networks": networks}
    )
    with pytest.raises(InvalidInput) as raised:
        load_catalog(path)
    assert raised.value.field.startswith("templates.json: ")
    assert field in raised.value.field


@pytest.mark.parametrize(
    ("document", "field"),
    [({"version": 2}, "version"), ([], "templates.json"), ({"version": 1, "x": []}, "json")],
)
def test_user_file_shape_is_checked(tmp_path: Path, document: object, field: str) -> None:
    """A user file of the wrong version or shape is refused, not half-read."""
    with pytest.raises(InvalidInput, match=re.escape(field)):
        load_catalog(write_user_file(tmp_path, document))


def test_user_templates_extend_and_override_the_catalog(tmp_path: Path) -> None:
    """User templates are added, and one with a shipped key replaces the shipped one."""
    path = write_user_file(
        tmp_path,
        {
            "version": 1,
            "traffic_sources": [minimal_source()],
            "affiliate_networks": [minimal_network(key="admitad", name="My admitad")],
        },
    )
    catalog = load_catalog(path)
    assert catalog.traffic_source("my_source").origin == "user"
    assert catalog.affiliate_network("admitad").name == "My admitad"
    assert len(catalog.affiliate_networks) == len(CATALOG.affiliate_networks)
    assert load_catalog(tmp_path / "absent.json") == CATALOG


@pytest.mark.skipif(not RAW_DATA.is_dir(), reason="raw template export not available")
def test_build_script_reproduces_the_shipped_catalog(tmp_path: Path) -> None:
    """tools/build_catalog.py run on the raw export yields exactly the committed files."""
    subprocess.run(
        [sys.executable, str(ROOT / "tools/build_catalog.py"), str(RAW_DATA), str(tmp_path)],
        check=True,
        capture_output=True,
    )
    for name in ("traffic_sources.json", "affiliate_networks.json"):
        shipped = (ROOT / "src/clickloop/catalog" / name).read_text(encoding="utf-8")
        assert (tmp_path / name).read_text(encoding="utf-8") == shipped


@pytest.mark.parametrize(
    ("key", "values", "names", "secrets"),
    [
        ("bodyclick_ru", {"key": "K3Y-1", "token": "T0KEN-2"}, {"k", "t"}, {"K3Y-1", "T0KEN-2"}),
        ("clickadu_com", {"personal_hash": "9f8e7d6c5b4a", "aid": "77"}, set(), {"9f8e7d6c5b4a"}),
        ("keitaro", {"domain": "up.example", "postback_key": "pbk1234"}, set(), {"pbk1234"}),
        (
            "rollerads_com",
            {"account_number": "42", "tracking_key": "trk-77aa"},
            set(),
            {"trk-77aa"},
        ),
        (
            "kwai_com",
            {"event_name": "buy", "pixel_id": "p1", "access_token": "at-9"},
            {"access_token"},
            {"at-9"},
        ),
        ("exoclick", {"goal_id": "a" * 32}, set(), set()),
        ("trafficstars_com", {"key": "h4qbuetYksJU"}, {"key"}, {"h4qbuetYksJU"}),
        ("zeropark", {"postback_key": "5c065711-cfe4"}, set(), {"5c065711-cfe4"}),
        ("propellerads", {"aid": "3898869", "tid": "154120"}, set(), set()),
    ],
)
def test_source_secrets_are_read_back_from_the_filled_url(
    key: str, values: dict[str, str], names: set[str], secrets: set[str]
) -> None:
    """A source's secret fields give the names they fill and the values in its URL, path too."""
    template = CATALOG.traffic_source(key)
    filled = fill_fields(template, values)
    declared = source_secrets(template, filled.postback_url)
    assert (set(declared.names), set(declared.values)) == (names, secrets)


def test_source_secrets_of_an_edited_url_keep_the_names() -> None:
    """A URL edited away from its template still has the declared parameter names masked."""
    template = CATALOG.traffic_source("bodyclick_ru")
    declared = source_secrets(template, "https://other.example/pb?t=abc")
    assert set(declared.names) == {"k", "t"}


def test_every_credential_field_is_marked_secret() -> None:
    """Shipped fields named like credentials (token, key, hash) are all marked secret."""
    from clickloop.domain.secrets import is_secret_name

    for template in CATALOG.templates:
        for field in template.fields:
            assert field.secret is is_secret_name(field.name), (template.key, field.name)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("exoclick", "exoclick"),
        ("ExoClick", "exoclick"),
        ("  PropellerAds ", "propellerads"),
        ("propeller", "propellerads"),
        ("zeropark.com", "zeropark"),
        ("tsyndicate.com", "trafficstars_com"),
    ],
)
def test_resolve_takes_a_key_name_part_or_domain(text: str, key: str) -> None:
    """What a user types names one template when one matches best, whatever its case."""
    found = CATALOG.resolve(TrafficSourceTemplate, text)
    assert isinstance(found, TrafficSourceTemplate)
    assert found.key == key


def test_resolve_returns_every_match_when_ambiguous_and_none_when_nothing_matches() -> None:
    """Several matches come back for the user to choose; a text matching nothing, none."""
    found = CATALOG.resolve(TrafficSourceTemplate, "trident")
    assert isinstance(found, tuple) and len(found) == 9
    assert all(isinstance(template, TrafficSourceTemplate) for template in found)
    assert CATALOG.resolve(AffiliateNetworkTemplate, "propellerads") == ()
    assert CATALOG.resolve(TrafficSourceTemplate, "") == ()


CHECKED_SOURCES = [t for t in CATALOG.traffic_sources if t.provenance.documentation_url]


@pytest.mark.parametrize("template", CHECKED_SOURCES, ids=lambda t: t.key)
def test_checked_templates_say_where_and_when(template: TrafficSourceTemplate) -> None:
    """Every template checked against documentation records the page, the day and a domain."""
    assert template.provenance.checked_on == date(2026, 12, 4)
    assert template.provenance.domain
    assert template.provenance.describe().endswith("(checked 2026-12-04)")


def test_the_sources_the_issue_names_are_all_in_the_catalog() -> None:
    """The sources media buyers look for first are there, the newly added ones documented."""
    wanted = {
        "propellerads", "zeropark", "trafficstars_com", "mgid", "taboola", "outbrain",
        "adsterra_com", "hilltopads_com", "kadam_net", "popcash_net", "clickadilla_com",
        "twinred_com", "trafficjunky_com", "juicyads_com", "ad_maven_com", "mondiad",
        "bidvertiser_com", "rollerads_com", "adcashcom",
    }  # fmt: skip
    assert wanted <= {template.key for template in CATALOG.traffic_sources}
    for key in ("propellerads", "zeropark", "trafficstars_com", "mgid", "taboola", "outbrain"):
        template = CATALOG.traffic_source(key)
        assert template.postback_url and not template.defect and template.provenance.domain


def test_docs_report_the_count_of_sources_with_a_working_s2s_url() -> None:
    """docs/templates.md states how many sources have a working S2S URL (the e2e test sends
    each of them through a running server) and how many templates there are."""
    docs = " ".join((ROOT / "docs/templates.md").read_text(encoding="utf-8").split())
    working = [t for t in CATALOG.traffic_sources if t.postback_url and not t.defect]
    assert f"**{len(CATALOG.traffic_sources)} traffic sources**" in docs
    assert f"**{len(working)} of the traffic sources have a working S2S URL**" in docs
    assert f"**{len(CATALOG.affiliate_networks)} affiliate networks**" in docs
    assert f"{len(CHECKED_SOURCES)} sources were checked" in docs


def test_uncaptured_click_fields_are_those_of_the_sources_flagged_for_it() -> None:
    """The check the traffic source page warns with finds, among the shipped sources, exactly
    the five whose S2S URL returns a click field that no row captures."""
    from clickloop.catalog.templates import uncaptured_click_fields

    found = {
        source.key: uncaptured_click_fields(
            (row.name for row in source.parameters), source.postback_url
        )
        for source in CATALOG.traffic_sources
    }
    assert {key: fields for key, fields in found.items() if fields} == {
        "avazu_com": ("external_id",),
        "bandaapps_com": ("external_id",),
        "devilspwa_com": ("external_id", "creative_id"),
        "popcash_net": ("external_id",),
        "trident_media_agency_android_tenjin_moloko": ("external_id",),
    }
    assert uncaptured_click_fields(["external_id"], "https://s.test/?c={external_id:x}") == ()
