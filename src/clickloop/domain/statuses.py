"""Conversion types and status resolution: a network's status word → a conversion type.

Order (SPEC §3): ignore_status → trainings in the URL → saved trainings (network, then global)
→ built-in and custom type names → "unknown status X". Case-insensitive, spaces trimmed.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from clickloop.errors import InvalidInput


class ConversionType(StrEnum):
    LEAD = "lead"
    SALE = "sale"
    REJECTED = "rejected"
    REGISTRATION = "registration"
    DEPOSIT = "deposit"
    TRASH = "trash"
    REBILL = "rebill"


BUILT_IN_TYPES = frozenset(ConversionType)
MAX_TYPE_NAME = 64
_TYPE_NAME = re.compile(r"[a-z][a-z0-9_]*")

# Training lists: type name → the status words that mean it, e.g. {"sale": ["approved"]}.
Trainings = Mapping[str, Sequence[str]]


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusIgnored:
    """The status does not give a conversion type; `silent` when the sender asked to drop it."""

    reason: str
    silent: bool = False


def normalize_word(word: str) -> str:
    return word.strip().casefold()


def split_words(text: str) -> tuple[str, ...]:
    """Words of a comma-separated training list, normalized, empties dropped, order kept."""
    return tuple(word for word in (normalize_word(part) for part in text.split(",")) if word)


def check_type_name(name: str) -> str:
    """A valid name for a new custom conversion type, normalized; raises InvalidInput."""
    normalized = normalize_word(name)
    if not _TYPE_NAME.fullmatch(normalized) or len(normalized) > MAX_TYPE_NAME:
        raise InvalidInput("name", "use a-z, 0-9 and _, starting with a letter, at most 64")
    if normalized in BUILT_IN_TYPES:
        raise InvalidInput("name", f"{normalized} is a built-in conversion type")
    if normalized == "ignore":
        # `ignore_status` is the drop list; a type named "ignore" could never be trained.
        raise InvalidInput("name", "ignore is reserved")
    return normalized


def resolve_status(
    status: str,
    *,
    ignore: Iterable[str] = (),
    url_trainings: Trainings | None = None,
    saved_trainings: Sequence[Trainings] = (),
    custom_types: Collection[str] = (),
) -> str | StatusIgnored:
    """The conversion type for `status`, or why there is none.

    `saved_trainings` is searched in order (the affiliate network's, then the global one).
    Within one training set, a word that names one of the types claiming it resolves to that
    type (`trash_status=trash&rejected_status=rejected,trash` → trash); otherwise the first
    claiming type in the set's order wins. Trainings to types that do not exist are skipped.
    """
    word = normalize_word(status)
    if not word:
        return StatusIgnored(reason="status missing")
    if word in {normalize_word(w) for w in ignore}:
        return StatusIgnored(reason=f"status {status.strip()} is in ignore_status", silent=True)
    known = BUILT_IN_TYPES | {normalize_word(name) for name in custom_types}
    for trainings in (url_trainings or {}, *saved_trainings):
        found = _match_training(word, trainings, known)
        if found is not None:
            return found
    if word in known:
        return word
    return StatusIgnored(reason=f"unknown status {status.strip()}")


def _match_training(word: str, trainings: Trainings, known: Collection[str]) -> str | None:
    claiming: list[str] = []
    for name, words in trainings.items():
        type_name = normalize_word(name)
        if type_name in known and word in {normalize_word(w) for w in words}:
            claiming.append(type_name)
    if not claiming:
        return None
    return word if word in claiming else claiming[0]
