"""Status resolution in SPEC §3 order, and custom conversion type names."""

from __future__ import annotations

import pytest

from clickloop.domain.statuses import (
    ConversionType,
    StatusIgnored,
    Trainings,
    check_type_name,
    resolve_status,
    split_words,
)
from clickloop.errors import InvalidInput

NETWORK: Trainings = {"sale": ["approved", "paid"], "rejected": ["declined"], "lead": ["hold"]}
GLOBAL: Trainings = {"lead": ["pending", "approved"], "trash": ["spam"], "vip": ["gold"]}


@pytest.mark.parametrize(
    ("status", "url", "expected"),
    [
        # built-in names, case-insensitive and trimmed
        ("sale", {}, "sale"),
        (" SALE ", {}, "sale"),
        ("Rejected", {}, "rejected"),
        ("rebill", {}, "rebill"),
        ("registration", {}, "registration"),
        # URL training (Keitaro's example)
        ("new", {"registration": ["new", "registered"], "sale": ["billed"]}, "registration"),
        ("billed", {"registration": ["new", "registered"], "sale": ["billed"]}, "sale"),
        ("BILLED", {"sale": [" Billed "]}, "sale"),
        # a type's own word wins within the URL trainings
        ("trash", {"trash": ["trash"], "rejected": ["rejected", "trash"]}, "trash"),
        ("trash", {"rejected": ["rejected", "trash"], "trash": ["trash"]}, "trash"),
        # otherwise the first claiming type in URL order wins
        ("x", {"lead": ["x"], "sale": ["x"]}, "lead"),
        ("x", {"sale": ["x"], "lead": ["x"]}, "sale"),
        # URL training beats a built-in name (Keitaro: sale_status=paid,rebill)
        ("rebill", {"sale": ["paid", "rebill"]}, "sale"),
        # URL training beats saved trainings
        ("approved", {"lead": ["approved"]}, "lead"),
        # saved trainings: network first, then global
        ("approved", {}, "sale"),
        ("pending", {}, "lead"),
        ("spam", {}, "trash"),
        ("hold", {}, "lead"),
        # custom types: by name and by training
        ("VIP", {}, "vip"),
        ("gold", {}, "vip"),
        ("platinum", {"vip": ["platinum"]}, "vip"),
        # training to a type that does not exist is skipped
        ("x", {"nosuch": ["x"], "sale": ["x"]}, "sale"),
        ("sale", {"nosuch": ["sale"]}, "sale"),
    ],
)
def test_resolve_status_follows_the_spec_order(
    status: str, url: dict[str, list[str]], expected: str
) -> None:
    """Each status resolves to the type the first matching rule gives."""
    result = resolve_status(
        status, url_trainings=url, saved_trainings=[NETWORK, GLOBAL], custom_types={"VIP"}
    )
    assert result == expected


@pytest.mark.parametrize(
    ("status", "ignore", "expected"),
    [
        ("", (), StatusIgnored(reason="status missing")),
        ("   ", (), StatusIgnored(reason="status missing")),
        ("weird", (), StatusIgnored(reason="unknown status weird")),
        (" Weird ", (), StatusIgnored(reason="unknown status Weird")),
        ("vip", (), StatusIgnored(reason="unknown status vip")),
        (
            "test",
            ("test", "check"),
            StatusIgnored(reason="status test is in ignore_status", silent=True),
        ),
        ("TEST", (" test ",), StatusIgnored(reason="status TEST is in ignore_status", silent=True)),
        # ignore_status comes before everything, even built-in names
        ("sale", ("sale",), StatusIgnored(reason="status sale is in ignore_status", silent=True)),
    ],
)
def test_resolve_status_ignores_with_a_reason(
    status: str, ignore: tuple[str, ...], expected: StatusIgnored
) -> None:
    """Missing, unknown and explicitly ignored statuses give a reason instead of a type."""
    assert resolve_status(status, ignore=ignore) == expected


def test_ignore_status_beats_url_training() -> None:
    """A word both trained and listed in ignore_status is ignored."""
    result = resolve_status("x", ignore=["x"], url_trainings={"sale": ["x"]})
    assert isinstance(result, StatusIgnored)
    assert result.silent


def test_conversion_types_are_the_seven_built_ins() -> None:
    """The built-in types are exactly Keitaro's six plus rebill."""
    assert [t.value for t in ConversionType] == [
        "lead",
        "sale",
        "rejected",
        "registration",
        "deposit",
        "trash",
        "rebill",
    ]


@pytest.mark.parametrize(
    ("text", "words"),
    [("new, Registered ,,", ("new", "registered")), ("", ()), (" , ", ()), ("a", ("a",))],
)
def test_split_words(text: str, words: tuple[str, ...]) -> None:
    """Training lists split on commas, trimmed and lower-cased, without empties."""
    assert split_words(text) == words


@pytest.mark.parametrize(
    ("name", "expected"), [("VIP", "vip"), (" first_deposit ", "first_deposit"), ("ftd2", "ftd2")]
)
def test_check_type_name_accepts(name: str, expected: str) -> None:
    """Custom type names are normalized to lower case."""
    assert check_type_name(name) == expected


@pytest.mark.parametrize(
    "name", ["sale", "Lead", "ignore", "2fa", "has space", "", "x" * 65, "a-b"]
)
def test_check_type_name_rejects(name: str) -> None:
    """Built-in, reserved and malformed names cannot become custom types."""
    with pytest.raises(InvalidInput):
        check_type_name(name)
