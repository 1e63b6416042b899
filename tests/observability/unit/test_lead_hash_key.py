"""`lead_hash` keyed with `NURTURE_LOG_HASH_KEY` (HMAC-SHA256): without the key nobody can
recompute a lead's hash from a guessed email; every service given the same key logs the same
hash for the same lead. Unset, it stays the unkeyed SHA-256."""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from services.common.config.settings import LogSettings, load
from services.common.observability.logging import configure_logging, lead_hash

LEAD = "ada@example.com"


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    configure_logging("test")  # no key: as every other test expects
    root.handlers[:], root.level = handlers, level
    logging.getLogger("aiokafka").setLevel(logging.NOTSET)


def test_the_key_comes_from_nurture_log_hash_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NURTURE_LOG_HASH_KEY", "s3cret")
    settings = load(LogSettings)
    assert settings.hash_key is not None and settings.hash_key.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(settings)
    monkeypatch.delenv("NURTURE_LOG_HASH_KEY")
    assert load(LogSettings).hash_key is None


def test_a_keyed_hash_is_an_hmac_that_the_plain_hash_does_not_match() -> None:
    plain = hashlib.sha256(LEAD.encode()).hexdigest()[:16]
    configure_logging("a", hash_key=None)
    assert lead_hash(LEAD) == plain
    configure_logging("a", hash_key=SecretStr("s3cret"))
    keyed = lead_hash(LEAD)
    assert keyed == hmac.new(b"s3cret", LEAD.encode(), hashlib.sha256).hexdigest()[:16]
    assert keyed != plain and len(keyed) == 16
    configure_logging("b", hash_key=SecretStr("s3cret"))  # another service, the same key
    assert lead_hash(LEAD) == keyed
    configure_logging("c", hash_key=SecretStr("other"))
    assert lead_hash(LEAD) != keyed
