"""The API's answers to requests it cannot serve: 405 with `Allow` on every route, 422 naming an
unknown query parameter or a malformed cursor, 422 naming a wrong-typed field, and never the text
of a Python exception in a message."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest

from tests.e2e.test_api import Api

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
LISTS = ("/clicks", "/conversions", "/conversions.csv", "/received-postbacks", "/deliveries")
# Words that only a Python exception's own text would put in a message.
PYTHON_TEXT = (
    "TypeError",
    "ValueError",
    "KeyError",
    "AttributeError",
    "Traceback",
    "argument",
    "NoneType",
    "object has no",
    "not subscriptable",
    "'int'",
    "'str'",
    "'list'",
    "'dict'",
    "(char ",
    "psycopg",
    "sqlite",
)


@pytest.fixture(scope="module")
def api(module_api: Api) -> Api:
    """One server for the module: every request here is refused or only reads."""
    return module_api


def _document(api: Api) -> dict[str, Any]:
    with urllib.request.urlopen(f"{api.base}/openapi.json", timeout=5) as answer:
        document: dict[str, Any] = json.loads(answer.read())
    return document


def _sample(path: str) -> str:
    return path.replace("{id}", "1").replace("{subid}", "abc")


def _allow(api: Api, method: str, path: str) -> tuple[int, str | None]:
    req = urllib.request.Request(f"{api.base}{path}", data=b"{}", method=method)
    req.add_header("Authorization", f"Bearer {api.token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as answer:
            return answer.status, answer.headers.get("allow")
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("allow")


@pytest.mark.slow
def test_every_api_route_answers_405_with_allow(api: Api) -> None:
    """Each path of the OpenAPI document refuses each method it does not declare with 405 and an
    `Allow` header listing the declared ones (GET implies HEAD)."""
    wrong = []
    paths = {**_document(api)["paths"], "/openapi.json": {"get": {}}}
    for path, operations in paths.items():
        declared = {method.upper() for method in operations}
        expected = declared | ({"HEAD"} if "GET" in declared else set())
        for method in METHODS:
            if method in declared:
                continue
            status, allow = _allow(api, method, _sample(path))
            got = {m.strip() for m in (allow or "").split(",") if m.strip()}
            if status != 405 or got != expected:
                wrong.append(f"{method} {path}: {status} allow={allow}")
    assert wrong == [], "\n".join(wrong)


@pytest.mark.slow
def test_unknown_query_parameters_are_named_in_a_422(api: Api) -> None:
    """A query parameter an endpoint does not declare is refused with 422 naming it, on every
    endpoint; the declared ones are accepted."""
    for path, operations in _document(api)["paths"].items():
        if "get" not in operations:
            continue
        status, body = api.call("GET", f"{_sample(path)}?colour=red")
        assert (status, body["code"], body.get("field")) == (422, "invalid", "colour"), path
        assert "colour" in body["message"]
    status, body = api.call("GET", "/conversions?subid=abc&type=sale&limit=5")
    assert status == 200, body


@pytest.mark.slow
@pytest.mark.parametrize("path", [p for p in LISTS if p != "/conversions.csv"])
@pytest.mark.parametrize("cursor", ["%C2%B2", "-1", "1.5", "x" * 100, "99999999999999999999"])
def test_malformed_cursors_are_named_in_a_422(api: Api, path: str, cursor: str) -> None:
    """A cursor that no page could have given is refused with 422 naming `cursor`."""
    if path == "/clicks" and cursor in ("99999999999999999999",):
        pytest.skip("a click cursor is a subid: letters and digits are well formed")
    status, body = api.call("GET", f"{path}?cursor={cursor}")
    assert (status, body["code"], body.get("field")) == (422, "invalid", "cursor"), body


WRONG_VALUES: list[Any] = [12345, 1.5, True, None, ["x"], {"a": 1}, "text"]


def _wrong_for(schema: dict[str, Any]) -> list[Any]:
    kinds = schema.get("type", "string")
    kinds = set(kinds if isinstance(kinds, list) else [kinds])
    if "enum" in schema:
        return [v for v in WRONG_VALUES if v not in schema["enum"]]
    fits = {
        "string": lambda v: isinstance(v, str),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
        "array": lambda v: isinstance(v, list),
        "object": lambda v: isinstance(v, dict),
        "null": lambda v: v is None,
    }
    return [v for v in WRONG_VALUES if not any(fits[k](v) for k in kinds if k in fits)]


REQUIRED_SAMPLES = {
    "name": "two",
    "url": "https://o.test/",
    "alias": "two",
    "platform": "meta",
    "pixel_id": "123",
    "access_token": "token",
    "status": "sale",
    "query": {"grouping": ["campaign"]},
    "ids": [1],
}


def _bodies(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any], str, Any]]:
    """(method, path, a valid body, field, wrong value) for every field of every JSON body."""
    cases = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            body = operation.get("requestBody")
            if body is None:
                continue
            schema = body["content"]["application/json"]["schema"]
            valid = {name: REQUIRED_SAMPLES[name] for name in schema.get("required", ())}
            for field, field_schema in schema.get("properties", {}).items():
                for value in _wrong_for(field_schema):
                    cases.append((method.upper(), path, valid, field, value))
    return cases


@pytest.mark.slow
def test_wrong_typed_json_fields_are_named_without_python_text(api: Api) -> None:
    """Every field of every JSON body, sent with a value of another JSON type, is refused with a
    4xx naming that field, and no message carries a Python exception's text."""
    for kind in ("traffic-sources", "affiliate-networks", "offers", "campaigns"):
        required = {"name": "one", "url": "https://o.test/", "alias": "one"}
        fields = {
            k: v for k, v in required.items() if kind in ("offers", "campaigns") or k == "name"
        }
        if kind == "offers":
            fields.pop("alias")
        if kind == "campaigns":
            fields.pop("url")
        assert api.call("POST", f"/{kind}", fields)[0] == 201
    document = _document(api)
    cases = _bodies(document)
    assert len(cases) > 100
    wrong = []
    for number, (method, path, valid, field, value) in enumerate(cases):
        unique = {k: f"{v}{number}" if k in ("name", "alias") else v for k, v in valid.items()}
        status, body = api.call(method, _sample(path), {**unique, field: value})
        if status < 400:
            continue  # a value the API can coerce (e.g. a number as text) is not an error
        message = body.get("message", "") if isinstance(body, dict) else str(body)
        named = isinstance(body, dict) and str(body.get("field", "")).split(".")[0].split("[")[0]
        if status != 422 or named != field or any(word in message for word in PYTHON_TEXT):
            wrong.append(f"{method} {path} {field}={value!r}: {status} {body}")
    assert wrong == [], "\n".join(wrong)


@pytest.mark.slow
@pytest.mark.parametrize(
    "raw",
    [b"{not json", b'{"a": 1,}', b"[" * 100000, b'{"name": "x"', b"\xff\xfe"],
)
def test_bad_json_is_described_without_python_text(api: Api, raw: bytes) -> None:
    """A body that is not JSON is a 400 whose message says where, not what the parser raised."""
    status, body = api.call("POST", "/offers", raw=raw)
    assert (status, body["code"]) == (400, "bad_json")
    assert not any(word in body["message"] for word in PYTHON_TEXT), body


@pytest.mark.slow
def test_unstorable_values_are_refused_without_database_text(api: Api) -> None:
    """A NUL inside a JSON text field is a 422 naming the field, not the database's complaint."""
    status, body = api.call("POST", "/offers", {"name": "a\x00b", "url": "https://o.test/"})
    assert (status, body["code"]) == (422, "invalid"), body
    assert body.get("field") == "name"
    assert not any(word in body["message"] for word in PYTHON_TEXT), body
