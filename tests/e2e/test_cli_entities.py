"""A campaign set up, changed and read back from the command line alone: entities, settings and
the lists of what was recorded, as an operator without the UI runs them (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import insert
from sqlalchemy.engine import Engine

from clickloop.cli import main
from clickloop.services import entities
from clickloop.services.campaigns import campaign_link
from clickloop.services.postbacks import import_conversions
from clickloop.storage import tables as t
from tests.integration.test_outbox import CLICK_TIME

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def run(
    engine: Engine,
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Run:
    """`clickloop ARGS…` in this process over the test database: (status, stdout, stderr)."""
    monkeypatch.setenv("CLICKLOOP_DATABASE_URL", database_url)
    monkeypatch.setenv("CLICKLOOP_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CLICKLOOP_PUBLIC_URL", "https://track.example")

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        try:
            status = main(list(args))
        except SystemExit as exit:  # argparse's refusals
            status = int(exit.code or 0)
        out, err = capsys.readouterr()
        return status, out, err

    return run


def ok(run: Run, *args: str) -> str:
    status, out, err = run(*args)
    assert (status, err) == (0, ""), err
    return out


def json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines()]


def test_a_campaign_from_the_shell(run: Run, engine: Engine) -> None:
    """Network, offer, source and campaign made with `add`; the campaign's link is the one the
    UI shows; `show`, `list` and `edit` see and change what the API would."""
    ok(run, "affiliate-networks", "add", "Net", "--training", "sale=approved,paid")
    ok(run, "offers", "add", "Shop", "--url", "https://shop.test/?s={subid}", "--network", "Net",
       "--payout", "2.50", "--currency", "EUR")  # fmt: skip
    ok(run, "traffic-sources", "add", "Src", "--parameter", "external_id:clickid:{clickid}",
       "--postback-url", "https://src.test/pb?cid={external_id}&token=s3cret")  # fmt: skip
    created = ok(run, "campaigns", "add", "Spring", "--alias", "spring", "--source", "Src",
                 "--offer", "Shop:70", "--cost-model", "cpc", "--cost", "0.05")  # fmt: skip
    source = entities.list_rows(engine, "traffic_sources")[0]
    link = campaign_link("https://track.example", "spring", source["parameters"])
    assert link == "https://track.example/spring?clickid={clickid}"
    assert created.splitlines()[-1] == f"link: {link}"
    assert ok(run, "campaigns", "link", "Spring") == link + "\n"
    assert ok(run, "campaigns", "link", "spring") == link + "\n"  # by alias too

    offer = json_lines(ok(run, "offers", "list"))[0]
    assert (offer["name"], offer["payout"], offer["currency"]) == ("Shop", "2.500000", "EUR")
    shown = json.loads(ok(run, "campaigns", "show", "Spring", "--format", "json"))
    assert shown["offers"] == [{"offer_id": offer["id"], "weight": 70}]
    assert (shown["cost_model"], shown["link"]) == ("cpc", link)
    source_shown = json.loads(ok(run, "traffic-sources", "show", "Src", "--format", "json"))
    assert "s3cret" not in source_shown["postback_url"]  # masked as the API masks it

    assert ok(run, "offers", "edit", "Shop", "--payout", "3", "--name", "Store") == (
        f"offer {offer['id']}: changed\n"
    )
    assert ok(run, "offers", "edit", "Store", "--payout", "3") == (
        f"offer {offer['id']}: nothing to change\n"
    )
    assert entities.get_entity(engine, "offers", int(str(offer["id"])))["name"] == "Store"
    ok(run, "campaigns", "pause", "Spring")
    assert entities.list_rows(engine, "campaigns")[0]["status"] == "paused"
    ok(run, "campaigns", "resume", "Spring")
    ok(run, "campaigns", "edit", "Spring", "--offer", "")
    assert entities.get_entity(engine, "campaigns", int(str(shown["id"])))["offers"] == []


def test_remove_refuses_what_data_refers_to(run: Run, engine: Engine) -> None:
    """An offer on a campaign, or a campaign with clicks, is not removed (its data would be
    lost); once nothing refers to it, it is."""
    ok(run, "offers", "add", "Shop", "--url", "https://shop.test/")
    ok(run, "campaigns", "add", "Spring", "--alias", "spring", "--offer", "Shop")
    status, _, err = run("offers", "remove", "Shop")
    assert status == 1
    assert err == "error: remove: offer 1 is used by campaigns (take it off its campaigns first)\n"
    with engine.begin() as conn:
        conn.execute(insert(t.clicks).values(subid="s1", created_at=CLICK_TIME, campaign_id=1))
    status, _, err = run("campaigns", "remove", "spring")
    assert (status, "pause it instead" in err) == (1, True)
    with engine.begin() as conn:
        conn.execute(t.clicks.delete())
    assert ok(run, "campaigns", "remove", "spring") == "removed campaign 1: spring\n"
    assert ok(run, "offers", "remove", "Shop") == "removed offer 1: Shop\n"
    assert entities.list_rows(engine, "offers") == []


def test_settings_show_and_set_every_changeable_setting(run: Run, engine: Engine) -> None:
    """Each setting the UI changes is set from the shell, in its short form or JSON; the key
    and the internal version are not shown."""
    for key, value in [
        ("allowed_networks", "10.0.0.0/8, 192.168.1.7"),
        ("aliases", "clickid=subid;type=status"),
        ("status_trainings", "sale=approved,paid;lead=pending"),
        ("timezone", "Europe/Berlin"),
        ("currency", "eur"),
        ("s2s_disable_after_hours", "24"),
        ("ignored_answer_status", "400"),
        ("report_marked_dimensions", "sub_id_1,keyword"),
        ("tracking_domains", "https://Go.example.com/, https://t.example.net"),
    ]:
        ok(run, "settings", "set", key, value)
    ok(run, "settings", "set", "aliases", '{"cid": "subid"}')
    stored = json.loads(ok(run, "settings", "show"))
    assert stored == {
        "currency": "EUR",
        "timezone": "Europe/Berlin",
        "aliases": {"cid": "subid"},
        "status_trainings": {"sale": ["approved", "paid"], "lead": ["pending"]},
        "allowed_networks": ["10.0.0.0/8", "192.168.1.7/32"],
        "s2s_disable_after_hours": 24,
        "ignored_answer_status": 400,
        "report_marked_dimensions": ["sub_id_1", "keyword"],
        "tracking_domains": ["https://go.example.com", "https://t.example.net"],
    }
    assert ok(run, "settings", "set", "allowed_networks", "") == "allowed_networks = []\n"


def test_lists_of_clicks_conversions_and_postbacks_filter(run: Run, engine: Engine) -> None:
    """`clicks list`, `conversions list` and `postbacks list` show what was recorded, newest
    first, narrowed by campaign, subid, time, type and outcome."""
    from tests.integration.test_outbox import make_world

    world = make_world(engine, source_url=None)
    clicks = json_lines(ok(run, "clicks", "list", "--campaign", "camp"))
    assert [c["subid"] for c in clicks] == ["sub1"]
    assert run("clicks", "list", "--since", "2999-01-01") == (0, "", "no clicks match\n")
    conversions = json_lines(ok(run, "conversions", "list", "--subid", "sub1", "--type", "sale"))
    assert [c["id"] for c in conversions] == [world.conversion_id]
    assert json.loads(ok(run, "clicks", "show", "sub1", "--format", "json"))["subid"] == "sub1"
    lines = ["nope,1,,sale", "sub1,2,t2,sale"]
    list(import_conversions(engine, lines, now=CLICK_TIME))
    ignored = json_lines(ok(run, "postbacks", "list", "--outcome", "ignored"))
    assert [p["subid"] for p in ignored] == ["nope"]
    assert len(json_lines(ok(run, "postbacks", "list", "--limit", "1"))) == 1
    status, out, err = run("conversions", "list", "--campaign", "other")
    assert (status, out, err) == (1, "", "error: campaign not found: other\n")
    status, out, err = run("postbacks", "list", "--subid", "none-such")
    assert (status, out, err) == (0, "", "no received postbacks match\n")


def test_a_table_shows_hostile_values_as_text(run: Run, engine: Engine) -> None:
    """`--format table` draws a table in which a name that looks like markup or carries
    terminal escapes is shown as written, escaped, never interpreted."""
    entities.create_offer(
        engine, name="[bold red]x[/] \x1b[2J", url="https://a.test/", now=CLICK_TIME
    )
    table = ok(run, "offers", "list", "--format", "table")
    assert "[bold red]x[/] \\x1b[2J" in table
    assert "\x1b" not in table and "┃ name" in table


def test_a_source_from_a_defective_template_is_made_with_a_warning(run: Run) -> None:
    """The entity is made (the user may add the missing row), but stderr says what will not
    work: Avazu's S2S sends {external_id}, which none of its rows captures."""
    status, out, err = run("traffic-sources", "create", "--template", "avazu_com")
    assert (status, out) == (0, "created traffic-sources 1 from template avazu_com\n")
    assert err.startswith("warning: template avazu_com cannot work as shipped: the S2S URL")
    assert run("traffic-sources", "create", "--template", "exoclick", "--field",
               "goal_id=0123")[2] == ""  # fmt: skip
