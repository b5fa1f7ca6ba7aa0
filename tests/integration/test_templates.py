"""Creating traffic sources and affiliate networks from templates, re-applying, the CLI."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from clickloop.catalog.templates import Catalog, load_catalog
from clickloop.cli import main
from clickloop.errors import Conflict, InvalidInput, NotFound
from clickloop.services import entities
from clickloop.services import templates as service
from clickloop.storage import tables as t

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
GOAL = "0123456789abcdef0123456789abcdef"
CATALOG = load_catalog()


def row_of(engine: Engine, table: Any, row_id: int) -> dict[str, Any]:
    with engine.connect() as conn:
        return dict(conn.execute(select(table).where(table.c.id == row_id)).mappings().one())


def count(engine: Engine, table: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def user_catalog(tmp_path: Path, **sections: list[dict[str, Any]]) -> Catalog:
    path = tmp_path / service.USER_TEMPLATES_FILES[0]
    path.write_text(json.dumps({"version": 1, **sections}), encoding="utf-8")
    return service.load_user_catalog(tmp_path)


def test_traffic_source_is_filled_from_its_template(engine: Engine) -> None:
    """The entity gets the template's rows, URL with fields filled, statuses and body check."""
    source_id = service.create_traffic_source_from_template(
        engine, CATALOG, template_key="exoclick", field_values={"goal_id": GOAL}, now=NOW
    )
    row = row_of(engine, t.traffic_sources, source_id)
    assert row["name"] == "ExoClick"
    assert row["template"] == "exoclick"
    assert row["postback_url"] == (
        f"https://s.magsrv.com/tag.php?goal={GOAL}&tag={{external_id}}&value={{payout}}"
    )
    assert row["parameters"][0] == {
        "name": "external_id",
        "param": "external_id",
        "macro": "{conversions_tracking}",
    }
    assert row["postback_statuses"] == ["sale", "deposit"]
    assert row["response_must_contain"] == "OK"


def test_missing_field_creates_nothing(engine: Engine) -> None:
    """A template whose fields are not all given is refused before anything is written."""
    with pytest.raises(InvalidInput, match="goal_id"):
        service.create_traffic_source_from_template(
            engine, CATALOG, template_key="exoclick", field_values={}, now=NOW
        )
    assert count(engine, t.traffic_sources) == 0


def test_network_keeps_postback_params_and_trainings(engine: Engine) -> None:
    """A network gets offer and postback parameters and the trainings they carry."""
    network_id = service.create_affiliate_network_from_template(
        engine,
        CATALOG,
        template_key="12monkiss_com",
        field_values={"status": "approve", "currency": "usd"},
        now=NOW,
        name="12Monkiss approvals",
    )
    row = row_of(engine, t.affiliate_networks, network_id)
    assert row["offer_params"] == "&click_id={subid}"
    assert "&status=approve&" in row["postback_params"]
    assert row["status_trainings"]["sale"] == ["approve", "rebill"]
    assert row["template"] == "12monkiss_com"


def test_catalog_change_does_not_touch_entities_until_reapplied(
    engine: Engine, tmp_path: Path
) -> None:
    """A newer template leaves the entity alone; re-applying takes it, fields read back."""
    source_id = service.create_traffic_source_from_template(
        engine, CATALOG, template_key="exoclick", field_values={"goal_id": GOAL}, now=NOW
    )
    newer = user_catalog(
        tmp_path,
        traffic_sources=[
            {
                "key": "exoclick",
                "name": "ExoClick v2",
                "parameters": [{"name": "external_id", "param": "tag", "macro": "{ct}"}],
                "postback_url": "https://s.magsrv.com/tag.php?goal=YOUR_ID&tag={external_id}",
                "postback_statuses": ["sale"],
                "response_must_contain": "OK",
                "fields": [{"name": "goal_id", "label": "Goal", "placeholder_in_url": "YOUR_ID"}],
            }
        ],
    )
    before = row_of(engine, t.traffic_sources, source_id)
    assert before["postback_url"].endswith("&value={payout}")

    changed = service.reapply_traffic_source_template(engine, newer, source_id, now=NOW)

    after = row_of(engine, t.traffic_sources, source_id)
    assert after["postback_url"] == f"https://s.magsrv.com/tag.php?goal={GOAL}&tag={{external_id}}"
    assert after["postback_statuses"] == ["sale"]
    assert after["name"] == "ExoClick"
    assert set(changed) == {"parameters", "postback_url", "postback_statuses"}


def test_reapply_takes_new_field_values_and_reports_no_change_when_equal(engine: Engine) -> None:
    """Given values win over the ones read back; an unchanged entity reports nothing."""
    source_id = service.create_traffic_source_from_template(
        engine, CATALOG, template_key="exoclick", field_values={"goal_id": GOAL}, now=NOW
    )
    assert service.reapply_traffic_source_template(engine, CATALOG, source_id, now=NOW) == {}
    other = "f" * 32
    changed = service.reapply_traffic_source_template(
        engine, CATALOG, source_id, now=NOW, field_values={"goal_id": other}
    )
    assert changed["postback_url"].startswith(f"https://s.magsrv.com/tag.php?goal={other}&")


def test_dry_run_reports_without_writing(engine: Engine) -> None:
    """A dry run names what re-applying would change and leaves the entity as it was."""
    source_id = service.create_traffic_source_from_template(
        engine, CATALOG, template_key="exoclick", field_values={"goal_id": GOAL}, now=NOW
    )
    before = row_of(engine, t.traffic_sources, source_id)
    changed = service.reapply_traffic_source_template(
        engine, CATALOG, source_id, now=NOW, template_key="evadav_com", dry_run=True
    )
    assert changed["template"] == "evadav_com"
    assert row_of(engine, t.traffic_sources, source_id) == before


@pytest.mark.parametrize(
    ("key", "values"),
    [
        ("12monkiss_com", {"status": "dep", "currency": "eur"}),
        ("trinity_mx", {"source_id": "s-9", "subsource_id": "ss-1", "status": "lead"}),
        ("cpabazuka_com", {"currency": "EUR"}),
    ],
)
def test_network_fields_are_read_back_on_reapply(
    engine: Engine, key: str, values: dict[str, str]
) -> None:
    """Field values in postback or offer parameters survive a re-apply without being retyped."""
    network_id = service.create_affiliate_network_from_template(
        engine, CATALOG, template_key=key, field_values=values, now=NOW
    )
    assert service.reapply_affiliate_network_template(engine, CATALOG, network_id, now=NOW) == {}


def test_network_postback_url_is_keitaro_shaped() -> None:
    """The URL given to a network is /{postback_key}/postback? plus the template's parameters."""
    url = service.network_postback_url("https://trk.example/", "k3y", "subid={sub1}&status=lead")
    assert url == "https://trk.example/k3y/postback?subid={sub1}&status=lead"


def test_reapply_needs_a_template(engine: Engine) -> None:
    """An entity made by hand has no template to re-apply unless one is named."""
    network_id = entities.create_affiliate_network(
        engine, name="Hand made", now=NOW, notes="my own notes"
    )
    with pytest.raises(NotFound):
        service.reapply_affiliate_network_template(engine, CATALOG, network_id, now=NOW)
    changed = service.reapply_affiliate_network_template(
        engine, CATALOG, network_id, now=NOW, template_key="admitad"
    )
    row = row_of(engine, t.affiliate_networks, network_id)
    assert changed["template"] == "admitad"
    assert row["offer_params"] == "&subid={subid}"
    assert row["notes"] == "my own notes"


def test_network_aliases_are_merged_into_settings(engine: Engine, tmp_path: Path) -> None:
    """A template's aliases land in the settings; a clashing alias creates nothing."""
    network = {
        "key": "aliased",
        "name": "Aliased",
        "offer_params": "&s={subid}",
        "postback_params": "clickid={s}&status={st}",
        "network_macros": ["{s}", "{st}"],
        "aliases": {"clickid": "subid"},
    }
    clash = dict(
        network,
        key="clash",
        name="Clash",
        postback_params="subid={s}&status={st}&clickid={s}",
        aliases={"clickid": "tid"},
    )
    catalog = user_catalog(tmp_path, affiliate_networks=[network, clash])
    service.create_affiliate_network_from_template(
        engine, catalog, template_key="aliased", field_values={}, now=NOW
    )
    assert entities.get_settings(engine)["aliases"] == {"clickid": "subid"}
    with pytest.raises(Conflict):
        service.create_affiliate_network_from_template(
            engine, catalog, template_key="clash", field_values={}, now=NOW
        )
    assert count(engine, t.affiliate_networks) == 1


def test_same_name_twice_is_a_conflict(engine: Engine) -> None:
    """Two entities from one template need different names."""
    service.create_affiliate_network_from_template(
        engine, CATALOG, template_key="admitad", field_values={}, now=NOW
    )
    with pytest.raises(Conflict):
        service.create_affiliate_network_from_template(
            engine, CATALOG, template_key="admitad", field_values={}, now=NOW
        )


def test_cli_creates_from_user_template_and_searches(
    database_url: str,
    engine: Engine,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The CLI finds a user's template in the data directory and creates an entity from it."""
    monkeypatch.setenv("CLICKLOOP_DATABASE_URL", database_url)
    monkeypatch.setenv("CLICKLOOP_DATA_DIR", str(tmp_path))
    user_catalog(
        tmp_path,
        affiliate_networks=[
            {
                "key": "house_network",
                "name": "House Network",
                "offer_params": "&aff_sub={subid}",
                "postback_params": "subid={aff_sub}&status={goal}&payout={sum}&tid=TOKEN",
                "network_macros": ["{aff_sub}", "{goal}", "{sum}"],
                "fields": [{"name": "tid", "label": "tid", "placeholder_in_url": "TOKEN"}],
            }
        ],
    )
    assert main(["templates", "search", "house"]) == 0
    assert capsys.readouterr().out.startswith("house_network\tnetwork\tHouse Network")
    assert main(["affiliate-networks", "create", "--template", "house_network"]) == 1
    assert "tid: required" in capsys.readouterr().err
    args = ["affiliate-networks", "create", "--template", "house_network", "--field", "tid=t1"]
    assert main(args) == 0
    with engine.connect() as conn:
        params = conn.execute(select(t.affiliate_networks.c.postback_params)).scalar_one()
    assert params.endswith("&tid=t1")
