"""`clickloop templates show | search | validate` as a user runs them: where a template came
from, finding one by name or domain, and checking a templates file of one's own."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from clickloop.cli import main
from clickloop.services.templates import check_templates_file

SOURCE: dict[str, Any] = {
    "key": "house_source",
    "name": "House source",
    "documentation_url": "https://house.example/docs/postback",
    "checked_on": "2026-12-01",
    "domain": "house.example",
    "parameters": [
        {"name": "external_id", "param": "clickid", "macro": "{click_id}"},
        {"name": "sub_id_1", "param": "zone", "macro": "{zone}"},
    ],
    "postback_url": "https://pb.house.example/c?cid={external_id}&z={sub_id_1}&t=MY_TOKEN",
    "postback_statuses": ["sale"],
    "fields": [{"name": "token", "label": "Token", "placeholder_in_url": "MY_TOKEN"}],
}
NETWORK: dict[str, Any] = {
    "key": "house_network",
    "name": "House network",
    "offer_params": "&s1={subid}",
    "postback_params": "subid={s1}&status={st}&payout={sum}",
    "network_macros": ["{s1}", "{st}", "{sum}"],
}
YAML_FILE = """\
version: 1
traffic_sources:
  - key: yaml_source
    name: YAML source
    documentation_url: https://yaml.example/docs
    checked_on: 2026-12-02
    parameters:
      - {name: external_id, param: cid, macro: "[CLICK_ID]"}
    postback_url: "https://yaml.example/pb?cid={external_id}&sum={payout}"
"""


@pytest.fixture(autouse=True)
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CLICKLOOP_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CLICKLOOP_DATABASE_URL", f"sqlite:///{tmp_path / 'unused.db'}")
    return tmp_path


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["templates", *args])
    out, err = capsys.readouterr()
    return code, out, err


def write_json(path: Path, document: object) -> Path:
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def test_show_tells_where_a_template_came_from_and_when(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A checked template shows its page and date; an unchecked one says nobody checked it."""
    code, out, _ = run(capsys, "show", "propellerads")
    shown = json.loads(out)
    assert code == 0
    assert shown["source"].endswith("(checked 2026-12-04)")
    assert shown["documentation_url"].startswith("https://")
    assert (shown["checked_on"], shown["domain"]) == ("2026-12-04", "propellerads.com")
    _, out, _ = run(capsys, "show", "7searchcom")
    assert "not checked against the source's documentation" in json.loads(out)["source"]


def test_show_of_a_user_template_names_the_file(
    capsys: pytest.CaptureFixture[str], data_dir: Path
) -> None:
    """A user's own template says which of the user's files it came from."""
    (data_dir / "templates.yaml").write_text(YAML_FILE, encoding="utf-8")
    code, out, _ = run(capsys, "show", "yaml_source")
    assert code == 0
    assert json.loads(out)["source"] == "https://yaml.example/docs (checked 2026-12-02)"
    assert json.loads(out)["origin"] == "user"


def test_show_of_an_unknown_key_suggests_the_matches(capsys: pytest.CaptureFixture[str]) -> None:
    """A near miss answers with a one-line error naming what it might have meant."""
    code, out, err = run(capsys, "show", "Propeller")
    assert (code, out) == (1, "")
    assert err == "error: template not found: Propeller (did you mean: propellerads?)\n"


@pytest.mark.parametrize(
    ("text", "first"),
    [("PROPELLER", "propellerads"), ("magsrv.com", "exoclick"), ("Zeropark.com", "zeropark")],
)
def test_search_finds_by_name_part_or_domain(
    capsys: pytest.CaptureFixture[str], text: str, first: str
) -> None:
    """Search ignores case and looks at names, keys and domains (S2S hosts included)."""
    code, out, _ = run(capsys, "search", text)
    assert code == 0
    assert out.split("\t", 1)[0] == first


def test_validate_renders_a_good_json_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Each template of a valid file is shown with its URLs filled for a sample click."""
    path = write_json(
        tmp_path / "mine.json",
        {"version": 1, "traffic_sources": [SOURCE], "affiliate_networks": [NETWORK]},
    )
    code, out, err = run(capsys, "validate", str(path))
    assert (code, err) == (0, "")
    assert "ok\thouse_source\ttraffic source\tHouse source" in out
    assert "  campaign link: https://TRACKER/ALIAS?clickid={click_id}&zone={zone}" in out
    assert (
        "  S2S GET: https://pb.house.example/c?cid=ext-88421&z=sub_id_1-sample&t=sample-token"
        in out
    )
    assert "  offer URL: https://offer.example/lp?o=1&s1=0GZ3kT9xQ2mZ7aB" in out
    assert out.endswith(f"2 templates in {path} are valid\n")


def test_validate_reads_yaml_with_a_bare_date(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A YAML file (whose unquoted date YAML reads as a date) validates like JSON."""
    path = tmp_path / "mine.yaml"
    path.write_text(YAML_FILE, encoding="utf-8")
    code, out, _ = run(capsys, "validate", str(path))
    assert code == 0
    assert "  S2S GET: https://yaml.example/pb?cid=ext-88421&sum=12.5" in out


def test_validate_says_when_a_template_replaces_a_shipped_one(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A user template with a shipped key is marked: it will take that template's place."""
    path = write_json(
        tmp_path / "mine.json", {"version": 1, "traffic_sources": [dict(SOURCE, key="exoclick")]}
    )
    code, out, _ = run(capsys, "validate", str(path))
    assert code == 0
    assert "ok\texoclick\ttraffic source\tHouse source\treplaces the shipped template\n" in out


def test_validate_reports_what_would_not_work(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A template that parses but sends an unknown macro or a click id it never captured, or
    never passes our subid to the network, is listed with its problem, and the command fails."""
    broken_source = dict(
        SOURCE,
        parameters=[{"name": "sub_id_1", "param": "zone", "macro": "{zone}"}],
        postback_url="https://pb.house.example/c?cid={external_id}&x={externa_id}&t=MY_TOKEN",
    )
    broken_network = dict(NETWORK, offer_params="&s1={sub_id_1}")
    path = write_json(
        tmp_path / "mine.json",
        {"version": 1, "traffic_sources": [broken_source], "affiliate_networks": [broken_network]},
    )
    code, out, err = run(capsys, "validate", str(path))
    assert code == 1
    assert "  problem: unknown macro {externa_id} renders empty" in out
    assert (
        "  problem: sends {external_id}, which no parameter row captures: it renders empty" in out
    )
    assert "  problem: the offer parameters do not pass {subid}: postbacks match no click" in out
    assert err == f"error: 2 of 2 templates in {path} would not work\n"


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("bad.json", "{not json", "bad.json: not a readable JSON file: Expecting property name"),
        ("bad.yaml", "version: [1", "bad.yaml: not a readable YAML file: while parsing"),
        ("v2.json", '{"version": 2}', "v2.json: version: unsupported version 2"),
        ("list.json", "[]", "list.json: must be a JSON object"),
        (
            "method.json",
            json.dumps({"version": 1, "traffic_sources": [dict(SOURCE, postback_method="PUT")]}),
            "traffic_sources[house_source]: postback_method: must be GET or POST, not 'PUT'",
        ),
        (
            "date.json",
            json.dumps({"version": 1, "traffic_sources": [dict(SOURCE, checked_on="4.12.26")]}),
            "traffic_sources[house_source]: checked_on: must be a date, YYYY-MM-DD",
        ),
        (
            "doc.json",
            json.dumps(
                {"version": 1, "traffic_sources": [dict(SOURCE, documentation_url="docs page")]}
            ),
            "traffic_sources[house_source]: documentation_url: must be an http(s) URL",
        ),
        (
            "domain.yaml",
            "version: 1\naffiliate_networks:\n  - key: n\n    name: N\n    domain: https://n.example/\n",
            "affiliate_networks[n]: domain: a bare host name such as example.com",
        ),
    ],
)
def test_validate_refuses_a_bad_file_in_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, name: str, content: str, message: str
) -> None:
    """A file that is not valid gets one line naming the file, entry and field: no traceback."""
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    code, out, err = run(capsys, "validate", str(path))
    assert (code, out) == (1, "")
    assert err.startswith("error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_validate_of_a_missing_file_is_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A path that does not exist is an error naming it, not a traceback."""
    code, _, err = run(capsys, "validate", str(tmp_path / "absent.json"))
    assert code == 1
    assert err.startswith(f"error: {tmp_path / 'absent.json'}: not a readable JSON file")


def test_validate_finds_exactly_the_shipped_sources_flagged_defective(tmp_path: Path) -> None:
    """Every shipped source template, checked as a user file, renders without a problem except
    exactly those the catalog flags defective."""
    shipped = json.loads(
        (Path(__file__).parents[2] / "src/clickloop/catalog/traffic_sources.json").read_text()
    )
    path = write_json(
        tmp_path / "all.json", {"version": 1, "traffic_sources": shipped["templates"]}
    )
    checks = check_templates_file(path, now=datetime(2026, 12, 4, tzinfo=UTC))
    assert len(checks) == len(shipped["templates"])
    assert all(check.replaces_shipped for check in checks)
    with_problems = {check.template.key for check in checks if check.problems}
    assert with_problems == {t["key"] for t in shipped["templates"] if t["defect"]}
