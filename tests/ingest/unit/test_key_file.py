"""API keys from a mounted file (a Kubernetes Secret): checked at start, naming the variable and
the file; re-read when the file changes, without a restart; a bad edit keeps the keys in use."""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import orjson
import pytest

from services.common.config.settings import KafkaSettings, load
from services.common.errors import ConfigError
from services.ingest.adapters.publisher import FakePublisher
from services.ingest.bootstrap import Ingest, bootstrap
from services.ingest.domain.auth import hash_key
from services.ingest.entrypoints.http.app import create_app
from services.ingest.settings import IngestSettings
from tests.support import wait_until

EVENT = {"specversion": "1.0", "id": "e-1", "source": "https://www.example.com",
         "type": "web.page_viewed", "subject": "lead-1",
         "data": {"url": "https://www.example.com/"}}


def write_keys(path: Path, *keys: str) -> None:
    """Replace the file as a Secret update does: a new file swapped in."""
    fresh = path.with_suffix(".new")
    fresh.write_text(json.dumps([{"name": k, "sha256": hash_key(k)} for k in keys]))
    os.replace(fresh, path)


def ingest_with_file(path: Path, reload_seconds: float = 5.0) -> Ingest:
    settings = IngestSettings(api_keys_file=path, api_keys_reload_seconds=reload_seconds)
    return bootstrap(settings, KafkaSettings(), publisher=FakePublisher())


async def status(client: httpx.AsyncClient, key: str) -> int:
    r = await client.post("/v1/events", content=orjson.dumps(EVENT),
                          headers={"Authorization": f"Bearer {key}",
                                   "Content-Type": "application/cloudevents+json"})
    return r.status_code


def test_an_unreadable_or_invalid_key_file_stops_start_up_naming_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NURTURE_INGEST_API_KEYS", raising=False)
    missing = tmp_path / "missing.json"
    monkeypatch.setenv("NURTURE_INGEST_API_KEYS_FILE", str(missing))
    with pytest.raises(ConfigError, match=rf"NURTURE_INGEST_API_KEYS_FILE: .*{missing}: cannot"):
        load(IngestSettings)
    bad = tmp_path / "bad.json"
    bad.write_text('[{"name": "x", "sha256": "nothex"}]')
    monkeypatch.setenv("NURTURE_INGEST_API_KEYS_FILE", str(bad))
    with pytest.raises(ConfigError, match=r"bad.json: 0.sha256: String should match"):
        load(IngestSettings)


def test_a_name_both_in_the_variable_and_the_file_stops_start_up(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "keys.json"
    write_keys(path, "nk_a")
    monkeypatch.setenv("NURTURE_INGEST_API_KEYS_FILE", str(path))
    monkeypatch.setenv("NURTURE_INGEST_API_KEYS", json.dumps(
        [{"name": "nk_a", "sha256": hash_key("nk_other")}]))
    with pytest.raises(ConfigError, match=r"NURTURE_INGEST_API_KEYS: .*unique.*: nk_a"):
        load(IngestSettings)


async def test_keys_of_the_file_are_used_and_a_change_is_picked_up(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    write_keys(path, "nk_old")
    ingest = ingest_with_file(path)
    app = create_app(ingest)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://ingest") as client:
        assert await status(client, "nk_old") == 202
        assert await status(client, "nk_new") == 401
        write_keys(path, "nk_new")
        assert ingest.api_keys.reload() is True
        assert (await status(client, "nk_new"), await status(client, "nk_old")) == (202, 401)
        path.write_text("[{")  # a broken edit: refused, the keys in use stay
        assert ingest.api_keys.reload() is False
        assert await status(client, "nk_new") == 202
        write_keys(path)  # and so is a file that would leave no key
        assert ingest.api_keys.reload() is False
        assert await status(client, "nk_new") == 202


async def test_the_running_service_watches_the_file(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    write_keys(path, "nk_first")
    ingest = ingest_with_file(path, reload_seconds=0.05)
    app = create_app(ingest)
    async with ingest.running(), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://ingest") as client:
        assert await status(client, "nk_second") == 401
        write_keys(path, "nk_first", "nk_second")

        async def accepted() -> bool:
            return await status(client, "nk_second") == 202
        await wait_until(accepted, timeout=10, what="the new key to be accepted")
        assert await status(client, "nk_first") == 202
