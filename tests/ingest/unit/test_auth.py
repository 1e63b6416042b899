from __future__ import annotations

import base64

import pytest

from services.ingest.domain.auth import ApiKey, AuthError, authenticate, generate_key, hash_key

KEY = "nk_test-key"
KEYS = (ApiKey("web", hash_key(KEY), ("https://www.example.com*",)),
        ApiKey("crm", hash_key("nk_other"), ("*",)))


def basic(user: str, password: str = "") -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(
    "header", [f"Bearer {KEY}", f"bearer  {KEY} ", basic(KEY), basic(KEY, "x")])
def test_accepted_header_forms_find_the_key(header: str) -> None:
    assert authenticate(KEYS, header).name == "web"


@pytest.mark.parametrize(("header", "message"), [
    (None, "missing API key"),
    ("", "missing API key"),
    ("Bearer nk_wrong", "unknown API key"),
    ("Token abc", "unsupported Authorization scheme"),
    ("Basic !!!", "malformed Basic credentials"),
    (basic(""), "no user name"),
])
def test_refusals_are_401_and_say_why(header: str | None, message: str) -> None:
    with pytest.raises(AuthError) as info:
        authenticate(KEYS, header)
    assert info.value.status == 401
    assert message in info.value.message


def test_source_patterns_are_globs() -> None:
    assert KEYS[0].allows_source("https://www.example.com/pricing")
    assert not KEYS[0].allows_source("https://evil.example.org")
    assert KEYS[1].allows_source("anything")


def test_generated_keys_are_unique_and_hash_is_sha256_hex() -> None:
    a, b = generate_key(), generate_key()
    assert a != b and a.startswith("nk_") and len(a) > 40
    assert len(hash_key(a)) == 64 and int(hash_key(a), 16) >= 0
