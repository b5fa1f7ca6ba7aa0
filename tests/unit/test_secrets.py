"""Secret masking: name patterns, percent-encoded names, and what a source's template declares."""

from __future__ import annotations

import io
import logging

import pytest

from clickloop.domain.secrets import (
    NO_SECRETS,
    DeclaredSecrets,
    SecretMaskingFilter,
    is_secret_name,
    mask_secrets,
)


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("token", True),
        ("api_key", True),
        ("post_api_key", True),
        ("apikey", True),
        ("accessToken", True),
        ("X-Auth", True),
        ("password", True),
        ("client_secret", True),
        ("keyword", False),
        ("subid", False),
        ("author", False),
        ("clickid", False),
        ("status", False),
    ],
)
def test_is_secret_name(name: str, secret: bool) -> None:
    """Credential-like parameter names are recognised, ordinary macros are not."""
    assert is_secret_name(name) is secret


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        (
            "https://api.telegram.org/bot123456:ABC-DEF1234ghIkl-zyx57W2v1u123ew11/sendMessage"
            "?chat_id=42&text=a",
            "https://api.telegram.org/bot***/sendMessage?chat_id=42&text=a",
        ),
        ("https://user:hunter2@crm.example/p?x=1", "https://user:***@crm.example/p?x=1"),
        ("https://sk_live_abc@crm.example/p", "https://***@crm.example/p"),
        (
            "https://x.example/p?api_key=abc&keyword=shoes&token=t0k#frag",
            "https://x.example/p?api_key=***&keyword=shoes&token=***#frag",
        ),
        ("https://x.example/p?token=&a=1", "https://x.example/p?token=&a=1"),
        ("secret=s3&cid=1", "secret=***&cid=1"),
        ('{"api_key": "a\\"b", "n": "v", "pin": 12}', '{"api_key": "***", "n": "v", "pin": 12}'),
        ("https://x.example/a=b/token=c", "https://x.example/a=b/token=c"),
        ("no secrets here", "no secrets here"),
    ],
)
def test_mask_secrets_by_name_pattern(text: str, masked: str) -> None:
    """Userinfo, credential parameters and Telegram bot tokens are masked; the rest is kept."""
    assert mask_secrets(text) == masked


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("https://x.example/p?%74oken=abc&a=1", "https://x.example/p?%74oken=***&a=1"),
        ("https://x.example/p?api%5Fkey=abc&a=1", "https://x.example/p?api%5Fkey=***&a=1"),
        ("https://x.example/p?%41PI%2Dkey=abc", "https://x.example/p?%41PI%2Dkey=***"),
        ("sub=1&pass%77ord=hunter2", "sub=1&pass%77ord=***"),
        ('{"\\u0074oken": "abc", "n": "v"}', '{"\\u0074oken": "***", "n": "v"}'),
        ("https://user:p%40ss@crm.example/p", "https://user:***@crm.example/p"),
        ("https://x.example/p?cid=%74oken", "https://x.example/p?cid=%74oken"),
    ],
)
def test_percent_encoded_names_are_decoded_before_matching(text: str, masked: str) -> None:
    """A credential name written with escapes (`%74oken=`) is recognised like the plain one."""
    assert mask_secrets(text) == masked


def test_percent_encoded_name_is_secret() -> None:
    """is_secret_name decodes the name first."""
    assert is_secret_name("%74oken") and is_secret_name("access%5Ftoken")
    assert not is_secret_name("%74id")


BODYCLICK = DeclaredSecrets(names=frozenset({"k", "t"}), values=frozenset({"K3Y-1", "T0KEN-2"}))
CLICKADU = DeclaredSecrets(values=frozenset({"9f8e7d6c5b4a"}))


@pytest.mark.parametrize(
    ("text", "declared", "masked"),
    [
        # A parameter the template declares secret, however its name is written.
        (
            "https://bodyclick.net/postback/other.php?k=K3Y-1&t=T0KEN-2&uid=5",
            BODYCLICK,
            "https://bodyclick.net/postback/other.php?k=***&t=***&uid=5",
        ),
        (
            "https://b.example/p?%74=other-value&uid=5",
            BODYCLICK,
            "https://b.example/p?%74=***&uid=5",
        ),
        ("https://b.example/p?T=other&uid=5", BODYCLICK, "https://b.example/p?T=***&uid=5"),
        ("https://b.example/p?t=x", NO_SECRETS, "https://b.example/p?t=x"),
        # A declared value in a path segment, in a body, in a response, percent-encoded.
        (
            "http://sconvtrk.com/conversion/9f8e7d6c5b4a/?visitor_id=1&aid=7",
            CLICKADU,
            "http://sconvtrk.com/conversion/***/?visitor_id=1&aid=7",
        ),
        ('{"hash": "x", "h": "9f8e7d6c5b4a"}', CLICKADU, '{"hash": "***", "h": "***"}'),
        ("ERROR: unknown key T0KEN-2", BODYCLICK, "ERROR: unknown key ***"),
        (
            "https://x.example/a%2Fb/c?v=a%2Fb%2Bc",
            DeclaredSecrets(values=frozenset({"a/b+c"})),
            "https://x.example/a%2Fb/c?v=***",
        ),
        # Part of a longer word is not the secret; a too short value is masked by name only.
        ("https://x.example/p/9f8e7d6c5b4a0/", CLICKADU, "https://x.example/p/9f8e7d6c5b4a0/"),
        (
            "https://x.example/p/ab/?c=ab",
            DeclaredSecrets(values=frozenset({"ab"})),
            "https://x.example/p/ab/?c=ab",
        ),
    ],
)
def test_declared_secrets_are_masked(text: str, declared: DeclaredSecrets, masked: str) -> None:
    """The names and values a source's template declares secret are masked wherever they stand."""
    assert mask_secrets(text, declared) == masked


def test_log_filter_masks_messages_and_tracebacks() -> None:
    """Every line through the log handler, its traceback included, is masked."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    masking = SecretMaskingFilter()
    masking.declared = CLICKADU
    handler.addFilter(masking)
    logger = logging.getLogger("tests.secrets")
    logger.addHandler(handler)
    try:
        logger.warning("sent %s", "https://x.example/p?token=abc&cid=1")
        try:
            raise ValueError("bad URL http://sconvtrk.com/conversion/9f8e7d6c5b4a/")
        except ValueError:
            logger.exception("delivery %d failed", 5)
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert "token=***&cid=1" in text and "delivery 5 failed" in text
    assert "/conversion/***/" in text and "Traceback" in text
    assert "abc" not in text and "9f8e7d6c5b4a" not in text
