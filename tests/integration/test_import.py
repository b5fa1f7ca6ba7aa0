"""Importing configuration files: the schema's answers, templates, re-imports and dry runs."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from clickloop.catalog.templates import load_catalog
from clickloop.errors import InvalidInput
from clickloop.services import entities, templates
from clickloop.services.entities import read_config_version
from clickloop.services.importer import check_document, import_document, import_schema
from clickloop.storage import tables as t

NOW = datetime(2026, 11, 1, tzinfo=UTC)
CATALOG = load_catalog()
DOCUMENT = """
version: 1
traffic_sources:
  - name: ExoClick
    template: exoclick
    fields: {goal_id: "123"}
affiliate_networks:
  - name: Admitad
    template: admitad
offers:
  - name: Dating DE
    url: https://offers.example.com/dating?aff=42
    affiliate_network: Admitad
    payout: "4.50"
    currency: EUR
campaigns:
  - name: Dating DE / ExoClick
    alias: dating-de
    traffic_source: ExoClick
    cost_model: cpc_param
    offers: [{name: Dating DE, weight: 100}]
    postbacks:
      - url: https://crm.example.com/hook?sub={subid}&status={status}
        statuses: [sale]
"""


def load(text: str = DOCUMENT) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(text)
    return document


def run(engine: Engine, document: dict[str, Any], **kwargs: Any) -> list[tuple[str, str, str]]:
    results = import_document(engine, document, now=NOW, catalog=CATALOG, **kwargs)
    return [(r.action, r.section, r.name) for r in results]


def count(engine: Engine, table: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_the_shipped_schema_is_a_valid_json_schema() -> None:
    """The schema in the package is itself valid draft 2020-12."""
    jsonschema.Draft202012Validator.check_schema(import_schema())


@pytest.mark.parametrize(
    ("change", "where", "reason"),
    [
        (lambda d: d["offers"][0].update(bogus=1), "offers[0] (Dating DE)", "'bogus'"),
        (lambda d: d["campaigns"][0].update(status="on"), "campaigns[0]", "'on' is not one of"),
        (lambda d: d.update(version=2), "version", "1 was expected"),
        (lambda d: d.update(widgets=[]), "document", "'widgets'"),
        (lambda d: d["offers"][0].pop("url"), "offers[0] (Dating DE)", "'url' is a required"),
        (
            lambda d: d["campaigns"][0]["offers"][0].update(weight="heavy"),
            "campaigns[0] (Dating DE / ExoClick).offers[0] (Dating DE).weight",
            "not of type 'integer'",
        ),
    ],
)
def test_the_schema_names_the_entry_and_key(change: Any, where: str, reason: str) -> None:
    """A refused document names the entry (with its name) and the key, not a Python error."""
    document = load()
    change(document)
    with pytest.raises(InvalidInput) as refused:
        check_document(document)
    assert refused.value.field.startswith(where)
    assert reason in refused.value.reason


def test_values_the_entity_rules_refuse_name_the_entry(engine: Engine) -> None:
    """Rules beyond the schema (an alias's characters, a missing network) name the entry."""
    document = load(DOCUMENT.replace("alias: dating-de", "alias: 'no good'"))
    with pytest.raises(InvalidInput) as refused:
        run(engine, document)
    assert refused.value.field == "campaigns[0] (Dating DE / ExoClick).alias"
    assert count(engine, t.traffic_sources) == 0
    document = load(DOCUMENT.replace("affiliate_network: Admitad", "affiliate_network: Nope"))
    with pytest.raises(InvalidInput) as refused:
        run(engine, document)
    assert refused.value.field == "offers[0] (Dating DE)"
    assert "affiliate network not found: Nope" in refused.value.reason


def test_a_template_gives_what_the_template_command_gives(engine: Engine) -> None:
    """`template:` fills a source and a network as `traffic-sources create --template` does."""
    run(engine, load())
    imported_source = entities.list_rows(engine, "traffic_sources")[0]
    imported_network = entities.list_rows(engine, "affiliate_networks")[0]
    assert (
        imported_source["postback_url"]
        == "https://s.magsrv.com/tag.php?goal=123&tag={external_id}&value={payout}"
    )
    source_id = templates.create_traffic_source_from_template(
        engine,
        CATALOG,
        template_key="exoclick",
        field_values={"goal_id": "123"},
        now=NOW,
        name="Other",
    )
    network_id = templates.create_affiliate_network_from_template(
        engine, CATALOG, template_key="admitad", field_values={}, now=NOW, name="Other"
    )
    made_source = entities.get_entity(engine, "traffic_sources", source_id)
    made_network = entities.get_entity(engine, "affiliate_networks", network_id)
    for column in (
        "template",
        "parameters",
        "postback_url",
        "postback_statuses",
        "response_must_contain",
    ):
        assert imported_source[column] == made_source[column]
    for column in ("template", "offer_params", "postback_params", "status_trainings", "notes"):
        assert imported_network[column] == made_network[column]


def test_importing_twice_changes_nothing_and_a_change_updates(engine: Engine) -> None:
    """A re-import finds every entry unchanged; an edited entry is updated in place."""
    first = run(engine, load())
    assert [action for action, _, _ in first] == ["created"] * 4
    version = read_config_version(engine)
    again = run(engine, load())
    assert [action for action, _, _ in again] == ["unchanged"] * 4
    assert read_config_version(engine) == version
    edited = load(
        DOCUMENT.replace('payout: "4.50"', 'payout: "5.00"').replace("[sale]", "[sale, lead]")
    )
    assert [action for action, _, _ in run(engine, edited)] == [
        "unchanged",
        "unchanged",
        "updated",
        "updated",
    ]
    offer = entities.list_rows(engine, "offers")[0]
    assert offer["payout"] == Decimal("5.00")
    assert count(engine, t.offers) == 1 and count(engine, t.campaigns) == 1
    campaign = entities.list_rows(engine, "campaigns")[0]
    postbacks = entities.get_entity(engine, "campaigns", campaign["id"])["postbacks"]
    assert [p["statuses"] for p in postbacks] == [["sale", "lead"]]


def test_a_dry_run_reports_and_writes_nothing(engine: Engine) -> None:
    """`dry_run` says what would be created and leaves the database as it was."""
    version = read_config_version(engine)
    assert [action for action, _, _ in run(engine, load(), dry_run=True)] == ["created"] * 4
    assert count(engine, t.traffic_sources) == count(engine, t.campaigns) == 0
    assert read_config_version(engine) == version


def test_a_file_is_read_by_its_suffix_and_checked(tmp_path: Path) -> None:
    """JSON and YAML files both go through the schema."""
    from clickloop.services.importer import read_document

    path = tmp_path / "setup.json"
    path.write_text('{"offers": [{"name": "x", "url": "https://a.test/", "bogus": 1}]}')
    with pytest.raises(InvalidInput) as refused:
        read_document(path)
    assert refused.value.field == "offers[0] (x)"


def test_the_documented_example_imports(engine: Engine) -> None:
    """The example in docs/import.md is a valid document that creates what it shows."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "import.md").read_text()
    example = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    results = run(engine, load(example))
    assert [action for action, _, _ in results] == ["created"] * 6
