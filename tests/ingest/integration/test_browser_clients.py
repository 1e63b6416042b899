"""A real web page against the real ingest and broker: Segment's browser library
(`@segment/analytics-next` from the npm registry, at the version locked in deploy/local/npm)
runs in Debian's headless Chromium (both installed by deploy/local/tools.py; Chromium driven over
the DevTools protocol), loads its settings
from ingest, sends a page view and an identify across origins (CORS), and the events land on
`nurture.events.v1`; a page whose origin the key does not name gets nowhere. Through the whole
stack (scoring, orchestrator, dispatch, an SMTP peer), the anonymous pricing view counts for the
visitor once identified, who gets the pricing-abandoner email (docs/identity.md)."""

from __future__ import annotations

import asyncio
import itertools
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import websockets
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from deploy.local.stack import free_port
from services.common.config.settings import KafkaSettings
from services.common.kafka.topics import Topics
from services.ingest.bootstrap import bootstrap
from services.ingest.domain.auth import hash_key
from services.ingest.entrypoints.http.app import create_app
from services.ingest.settings import ApiKeyConfig, IngestSettings
from services.orchestrator.adapters.program_files import load_programs
from services.orchestrator.domain.decide import Decider
from services.orchestrator.domain.policy import ContactPolicy
from tests.dispatch.integration.dispatch_harness import SmtpSink, dispatch_service
from tests.support import (
    isolated_kafka,
    orchestrator_app,
    read_topic,
    scoring_worker,
    serve,
    wait_until,
)

ROOT = Path(__file__).resolve().parents[3]
COMMAND_IDS = itertools.count(1)  # of DevTools protocol commands
WRITE_KEY = "nk_browser_site"
PAGE = """<!doctype html><html><head><title>Pricing</title></head><body>
<p id="out">loading</p>
<script src="/js/index.js"></script>
<script>
  const out = (text) => { document.getElementById("out").textContent = text; };
  AnalyticsNext.AnalyticsBrowser.load({writeKey: "%(key)s", cdnURL: "%(ingest)s"})
    .then(async ([analytics]) => {
      await analytics.page();
      await analytics.identify("ada@example.com", {email: "ada@example.com",
                                                   firstName: "Ada"});
      out("sent " + analytics.user().anonymousId());
    })
    .catch((error) => out("failed " + error));
</script></body></html>"""


RUDDERSTACK_PAGE = """<!doctype html><html><head><title>Pricing</title></head><body>
<p id="out">loading</p>
<script src="/js/index.js"></script>
<script>
  const out = (text) => { document.getElementById("out").textContent = text; };
  // the calls are sent once their answers are in (resource timing), not when queued
  const answered = (...paths) => paths.every((path) => performance.getEntriesByType("resource")
    .some((entry) => new URL(entry.name).pathname === path && entry.responseEnd > 0));
  const analytics = new rudderanalytics.RudderAnalytics();
  analytics.load("%(key)s", "%(ingest)s", {
    // configuration only: the source's settings given here instead of fetched from a
    // control plane, no device-mode destinations, nothing loaded from a CDN
    getSourceConfig: () => ({source: {id: "nurture", name: "site", workspaceId: "nurture",
                                       enabled: true, config: {}, destinations: []}}),
    polyfillIfRequired: false, sendAdblockPage: false,
  });
  analytics.ready(() => {
    analytics.page("Pricing", {url: location.href, path: location.pathname});
    analytics.identify("ada@example.com", {email: "ada@example.com", firstName: "Ada"});
    const wait = setInterval(() => {
      if (answered("/v1/page", "/v1/identify")) {
        clearInterval(wait);
        out("sent " + analytics.getAnonymousId());
      }
    }, 100);
  });
</script></body></html>"""


def tool(name: str) -> str:
    """A tool's path from deploy/local/tools.py (installed on first use)."""
    proc = subprocess.run(["python3", str(ROOT / "deploy" / "local" / "tools.py"), name],
                          capture_output=True, text=True, check=False, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def browser() -> tuple[str, str]:
    """(chromium, the folder of analytics-next's browser build)."""
    return tool("chromium"), tool("analytics-next")


LIBRARIES = {"analytics-next": PAGE, "rudderstack": RUDDERSTACK_PAGE}


def site(umd: str, ingest: dict[str, str], page: str = PAGE) -> Starlette:
    async def pricing(_request: Request) -> HTMLResponse:
        return HTMLResponse(page % {"key": WRITE_KEY, "ingest": ingest["url"]})
    return Starlette(routes=[Route("/pricing", pricing), Mount("/js", StaticFiles(directory=umd))])


@pytest.fixture
async def kafka(kafka_bootstrap: str) -> KafkaSettings:
    return await isolated_kafka(kafka_bootstrap)


@pytest.fixture
async def pages(browser: tuple[str, str],
                kafka: KafkaSettings) -> AsyncIterator[tuple[str, str, str]]:
    """(the allowed site's URL, another site's URL, ingest's URL): two sites serving the same
    page, and ingest with a browser key that names the first one's origin only."""
    ingest: dict[str, str] = {}
    async with serve(site(browser[1], ingest)) as allowed, \
            serve(site(browser[1], ingest)) as other:
        settings = IngestSettings(api_keys=[ApiKeyConfig(
            name="site", sha256=hash_key(WRITE_KEY), sources=["segment:*"], origins=[allowed])])
        async with serve(create_app(bootstrap(settings, kafka))) as url:
            ingest["url"] = url
            yield allowed, other, url


async def open_page(chromium: str, url: str, profile: Path) -> str:
    """What the page says once its scripts are done, as headless Chromium shows it: driven over
    the DevTools protocol, which opens the page and then asks for `#out` until it no longer says
    "loading" (a poll with a deadline)."""
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        f"--remote-debugging-port={port}", f"--user-data-dir={profile}", "about:blank",
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        async with httpx.AsyncClient() as client:
            async def target() -> str | None:
                try:
                    pages = (await client.get(f"http://127.0.0.1:{port}/json/list")).json()
                except httpx.TransportError:
                    return None
                return next((p["webSocketDebuggerUrl"] for p in pages if p["type"] == "page"),
                            None)
            await wait_until(target, timeout=60, what="Chromium's DevTools endpoint")
            socket = await target()
        assert socket is not None
        async with websockets.connect(socket, max_size=None) as devtools:
            await devtools_call(devtools, "Page.navigate", url=url)
            said: list[str] = []

            async def done() -> bool:
                said[:] = [await devtools_call(
                    devtools, "Runtime.evaluate", returnByValue=True,
                    expression="(document.getElementById('out') || {}).textContent || ''")]
                return said[0] not in ("", "loading")
            await wait_until(done, timeout=60, what="the page's scripts")
            return said[0]
    finally:
        proc.kill()
        await proc.wait()


async def devtools_call(devtools: Any, method: str, **params: Any) -> Any:
    """One DevTools protocol command; its result's value (Runtime.evaluate) or result."""
    ident = next(COMMAND_IDS)
    await devtools.send(orjson.dumps({"id": ident, "method": method, "params": params}).decode())
    while True:
        reply = orjson.loads(await devtools.recv())
        if reply.get("id") == ident:
            assert "error" not in reply, reply
            result = reply.get("result", {})
            return result.get("result", {}).get("value") if method == "Runtime.evaluate" \
                else result


async def test_a_page_sends_its_visitor_s_page_view_and_identify(
        browser: tuple[str, str], pages: tuple[str, str, str], kafka: KafkaSettings,
        tmp_path: Path) -> None:
    allowed, _other, _ingest = pages
    said = await open_page(browser[0], f"{allowed}/pricing", tmp_path / "chromium")
    assert said.startswith("sent "), said
    anonymous = said.removeprefix("sent ")
    records = await read_topic(kafka.bootstrap_servers, Topics(kafka.topic_prefix).events,
                               until=lambda rs: len(rs) >= 2, timeout=60)
    events: dict[str, Any] = {orjson.loads(r.value)["type"]: orjson.loads(r.value)
                              for r in records}
    view, profile = events["web.page_viewed"], events["crm.lead_upserted"]
    assert (view["subject"], view["data"]["path"]) == (anonymous, "/pricing")
    assert view["data"]["url"] == f"{allowed}/pricing" and view["source"] == "segment:site"
    assert "HeadlessChrome" in view["useragent"] and view["clientip"] == "127.0.0.0"
    assert profile["subject"] == "ada@example.com"
    assert profile["data"]["email"] == "ada@example.com"
    assert profile["data"]["first_name"] == "Ada"


async def test_a_page_the_key_does_not_name_gets_nowhere(
        browser: tuple[str, str], pages: tuple[str, str, str], kafka: KafkaSettings,
        tmp_path: Path) -> None:
    _allowed, other, ingest = pages
    said = await open_page(browser[0], f"{other}/pricing", tmp_path / "chromium")
    # the settings document is refused to that origin (403 without CORS headers): the
    # library cannot start, and nothing is sent
    assert said.startswith("failed "), said
    # a call sent after it (from no page, as a server may use the key) is the topic's only one
    sentinel = {"type": "page", "anonymousId": "sentinel", "messageId": "sentinel-1",
                "writeKey": WRITE_KEY, "properties": {"url": f"{other}/after"}}
    async with httpx.AsyncClient() as client:
        r = await client.post(f"{ingest}/v1/p", content=orjson.dumps(sentinel),
                              headers={"Content-Type": "text/plain"})
    assert r.status_code == 200, r.text
    records = await read_topic(kafka.bootstrap_servers, Topics(kafka.topic_prefix).events,
                               until=lambda rs: len(rs) >= 1, timeout=60)
    assert [orjson.loads(r.value)["id"] for r in records] == ["sentinel-1"]


@pytest.mark.parametrize("library", ["analytics-next", "rudderstack"])
async def test_an_anonymous_pricing_view_counts_for_the_visitor_who_identifies(
        browser: tuple[str, str], kafka: KafkaSettings, database_url: str,
        tmp_path: Path, library: str) -> None:
    """The same flow with Segment's and RudderStack's browser libraries, each configured only
    (RudderStack: its source settings given to `load`, data plane = ingest)."""
    orchestrator = await orchestrator_app(
        database_url, kafka, stage_model="b2b",
        decider=Decider(load_programs([ROOT / "config/programs/pricing-abandoner.yaml"]),
                        ContactPolicy(caps=(), quiet_hours=None), stage_model="b2b"))
    sink = SmtpSink()
    ingest: dict[str, str] = {}
    await sink.start()
    try:
        await pricing_abandoner_flow((browser[0], tool(library)), LIBRARIES[library], kafka,
                                     database_url, tmp_path, orchestrator, sink, ingest)
    finally:
        await sink.stop()


async def pricing_abandoner_flow(browser: tuple[str, str], page: str, kafka: KafkaSettings,
                                 database_url: str, tmp_path: Path, orchestrator: Any,
                                 sink: SmtpSink, ingest: dict[str, str]) -> None:
    async with scoring_worker(kafka, tmp_path, ROOT / "config/scoring/b2b.yaml"), \
            serve(site(browser[1], ingest, page)) as allowed, \
            serve(orchestrator) as orch, \
            dispatch_service(database_url, kafka, smtp_port=sink.port,
                             templates=str(ROOT / "config/templates")), \
            httpx.AsyncClient(timeout=30) as client:
        settings = IngestSettings(api_keys=[ApiKeyConfig(
            name="site", sha256=hash_key(WRITE_KEY), sources=["segment:*"], origins=[allowed])])
        async with serve(create_app(bootstrap(settings, kafka))) as url:
            ingest["url"] = url
            said = await open_page(browser[0], f"{allowed}/pricing", tmp_path / "chromium")
        assert said.startswith("sent "), said
        anonymous = said.removeprefix("sent ")

        async def lead(lead_id: str) -> dict[str, Any]:
            r = await client.get(f"{orch}/v1/leads/{lead_id}",
                                 headers={"Authorization": "Bearer t"})
            return r.json() if r.status_code == 200 else {}

        async def merged() -> bool:
            # the identify's link may reach scoring before the page view or after it (a
            # library may send the two at once): then the view is forwarded to the lead, else
            # the visitor's state and record are merged into the lead's; the same either way
            view = await lead("ada@example.com")
            rules = {b["rule"] for b in view.get("scores", {}).get("b2b", {}).get("breakdown", [])}
            return "pricing-page" in rules and bool(view.get("enrollments"))
        await wait_until(merged, timeout=120, what="the visitor's pricing view on the lead")
        view = await lead("ada@example.com")
        assert [(e["program_id"], e["status"]) for e in view["enrollments"]] == [
            ("pricing-abandoner", "active")]
        assert await lead(anonymous) == {}  # one lead, not two

        r = await client.post(f"{orch}/v1/admin/clock/advance", json={"seconds": 3700},
                              headers={"Authorization": "Bearer a"})
        assert r.status_code == 200, r.text
        await wait_until(lambda: len(sink.received) >= 1, timeout=60, what="the email")
        (mail,) = sink.received
        assert "ada@example.com" in mail["To"]
