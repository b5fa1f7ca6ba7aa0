"""Secret masking for everything shown outside the database: URLs, bodies, responses, log lines.

Two sources of knowledge: name patterns (`token`, `api_key`, userinfo, `bot<token>`), and what a
traffic source's template declares secret (parameter names such as `t`, and the values filled in).
"""

from __future__ import annotations

import difflib
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import quote, quote_plus, unquote_plus

MASK = "***"
# A declared value shorter than this is masked through its parameter name only: masking every
# standalone "42" would hide ordinary click ids and amounts.
MIN_DECLARED_VALUE = 4


@dataclass(frozen=True, slots=True)
class DeclaredSecrets:
    """Parameter names (any case) and literal values that templates declare secret."""

    names: frozenset[str] = frozenset()
    values: frozenset[str] = frozenset()
    _folded: frozenset[str] = field(init=False, repr=False, compare=False)
    _values: re.Pattern[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_folded", frozenset(name.casefold() for name in self.names))
        forms = {
            form
            for value in self.values
            if len(value) >= MIN_DECLARED_VALUE
            for form in (value, quote(value, safe=""), quote_plus(value, safe=""))
        }
        forms |= {form.lower() for form in forms if "%" in form}
        # Longest first, and only as a whole token: "abcd" is not masked inside "abcde".
        alternatives = "|".join(re.escape(form) for form in sorted(forms, key=len, reverse=True))
        pattern = re.compile(rf"(?<![\w.~-])(?:{alternatives})(?![\w.~-])") if forms else None
        object.__setattr__(self, "_values", pattern)

    def __or__(self, other: DeclaredSecrets) -> DeclaredSecrets:
        return DeclaredSecrets(names=self.names | other.names, values=self.values | other.values)

    def has_name(self, name: str) -> bool:
        return name.casefold() in self._folded

    def mask_values(self, text: str) -> str:
        return self._values.sub(MASK, text) if self._values is not None else text


NO_SECRETS = DeclaredSecrets()

# Parameter names are split into words ("post_api_key" → post, api, key; "accessToken" → access,
# token); a secret word anywhere, or a name ending in one ("apikey"), marks the value secret.
# "keyword" is a click macro, not a secret: whole words only, suffixes only for the compounds.
_SECRET_WORDS = frozenset(
    {
        "token",
        "key",
        "secret",
        "password",
        "passwd",
        "pwd",
        "pass",
        "auth",
        "authorization",
        "apikey",
        "signature",
        "sig",
        "credential",
        "credentials",
        "hash",
    }
)
_SECRET_SUFFIXES = ("token", "key", "secret", "password", "apikey")
_WORD_SPLIT = re.compile(r"[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])")

_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/?#@\s]+)@")
_QUERY_PARAM = re.compile(r"(?P<lead>^|[?&;\s])(?P<name>[^=&;?#/:\s]+)=(?P<value>[^&;#\s]*)")
_JSON_MEMBER = re.compile(
    r'"(?P<name>(?:[^"\\]|\\.){1,100})"(?P<sep>\s*:\s*)"(?P<value>(?:[^"\\]|\\.)*)"'
)
# Telegram bot API: https://api.telegram.org/bot123456:ABC-DEF.../sendMessage
_SECRET_HINT = re.compile(
    "|".join(sorted(_SECRET_WORDS | set(_SECRET_SUFFIXES) | {"bot"}, key=len, reverse=True)),
    re.IGNORECASE,
)
_TELEGRAM_BOT = re.compile(r"(?P<lead>/|\b)bot\d+:[A-Za-z0-9_-]+")


def is_secret_name(name: str, declared: DeclaredSecrets = NO_SECRETS) -> bool:
    """Whether a query, form or JSON member name holds a credential (escapes decoded first)."""
    if "%" in name or "+" in name:
        name = unquote_plus(name)
    if declared.has_name(name):
        return True
    words = [w.lower() for w in _WORD_SPLIT.split(name) if w]
    if any(w in _SECRET_WORDS for w in words):
        return True
    return name.lower().endswith(_SECRET_SUFFIXES)


def mask_secrets(text: str, declared: DeclaredSecrets = NO_SECRETS) -> str:
    """Mask credentials in a URL, form body, JSON body, response or log line."""
    if "@" in text:
        text = _USERINFO.sub(_mask_userinfo, text)
    text = declared.mask_values(text)
    # Runs on every attempt's URL and response: skip the per-parameter work when no secret
    # word, escape or declared name can occur (the common case), which is a single scan.
    if not (declared.names or "%" in text or "\\u" in text or _SECRET_HINT.search(text)):
        return text
    text = _TELEGRAM_BOT.sub(lambda m: f"{m['lead']}bot{MASK}", text)
    text = _QUERY_PARAM.sub(lambda m: _mask_query_param(m, declared), text)
    return _JSON_MEMBER.sub(lambda m: _mask_json_member(m, declared), text)


def secret_values(text: str, declared: DeclaredSecrets = NO_SECRETS) -> set[str]:
    """The credentials `mask_secrets` would hide in `text`, as literal values (to hide them
    wherever else they appear, e.g. in a form field that shows the URL for editing)."""
    masked = mask_secrets(text, declared)
    if masked == text:
        return set()
    matcher = difflib.SequenceMatcher(None, text, masked, autojunk=False)
    return {
        text[i1:i2]
        for tag, i1, i2, j1, j2 in matcher.get_opcodes()
        if tag in ("replace", "delete") and MASK.startswith(masked[j1:j2]) and i2 > i1
    }


def mask_headers(
    headers: Mapping[str, str] | None, declared: DeclaredSecrets = NO_SECRETS
) -> dict[str, str]:
    """Request headers as shown: a credential header's whole value masked (`Authorization`,
    `Access-Token`, `X-Api-Key`: the name decides, as for a parameter), others by pattern."""
    return {
        name: MASK if value and is_secret_name(name, declared) else mask_secrets(value, declared)
        for name, value in (headers or {}).items()
    }


def secret_header_values(headers: Mapping[str, str] | None) -> set[str]:
    """The values of credential headers (and of the word after `Bearer`), so that they are
    masked wherever they appear: a target's answer echoing them, a log line."""
    found: set[str] = set()
    for name, value in (headers or {}).items():
        if value and is_secret_name(name):
            found.add(value)
            scheme, _, credential = value.partition(" ")
            if credential and scheme.isalpha():
                found.add(credential.strip())
    return found


def _mask_userinfo(match: re.Match[str]) -> str:
    user, sep, _password = match["userinfo"].partition(":")
    # A lone userinfo ("https://TOKEN@host") is as secret as a password.
    masked = f"{user}:{MASK}" if sep else MASK
    return f"{match['scheme']}{masked}@"


def _mask_query_param(match: re.Match[str], declared: DeclaredSecrets) -> str:
    if not match["value"] or not is_secret_name(match["name"], declared):
        return match[0]
    return f"{match['lead']}{match['name']}={MASK}"


def _mask_json_member(match: re.Match[str], declared: DeclaredSecrets) -> str:
    if not match["value"] or not is_secret_name(_json_string(match["name"]), declared):
        return match[0]
    return f'"{match["name"]}"{match["sep"]}"{MASK}"'


def _json_string(raw: str) -> str:
    """A JSON member name as its reader sees it (`\\u0074oken` is `token`)."""
    if "\\" not in raw:
        return raw
    try:
        decoded = json.loads(f'"{raw}"')
    except ValueError:
        return raw
    return decoded if isinstance(decoded, str) else raw


class SecretMaskingFilter(logging.Filter):
    """A log handler filter that masks each record's message and traceback.

    `declared` is replaced by whoever knows the current configuration (the server, on reload).
    """

    def __init__(self) -> None:
        super().__init__()
        self.declared = NO_SECRETS
        self._formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = mask_secrets(record.getMessage(), self.declared)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_secrets(record.exc_text, self.declared)
        return True
