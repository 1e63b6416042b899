"""The fault run's peers (deploy/chaos/peers.py) as real servers: what they record, and each
misbehaving mode as dispatch's clients see it."""

from __future__ import annotations

import aiosmtplib
import httpx
import orjson
import pytest

from deploy.chaos.peers import HttpPeer, SmtpPeer
from deploy.chaos.tally import Delivery, Plan, messages

PLAN = Plan(leads=("lead-7",), events_per_lead=3, steps=(("touch-2", "webhook"),))

BODY = orjson.dumps({"type": "nurture.message",
                     "data": {"message_id": "m1", "lead_id": "lead-7", "step_id": "touch-2"}})
EMAIL = ("From: n@example.test\r\nTo: Chaos <lead-7@chaos.example.test>\r\n"
         "X-Nurture-Message-Id: e1\r\nSubject: hi\r\n\r\nhello\r\n")


async def test_a_slow_receiver_takes_the_webhook_the_client_gives_up_on() -> None:
    """`slow`: the reply comes after the client's timeout; the retry is a raw repeat of the
    same webhook-id, not a second delivery."""
    peer = HttpPeer(hang_seconds=3.0)
    await peer.start()
    try:
        await peer.set_mode("slow")
        async with httpx.AsyncClient(timeout=0.5) as client:
            for _ in range(2):
                with pytest.raises(httpx.ReadTimeout):
                    await client.post(peer.url, content=BODY, headers={"webhook-id": "m1"})
        assert peer.received.deliveries == [Delivery("webhook", "m1", "lead-7", "touch-2")] * 2
        counted = messages(PLAN, {}, peer.received.deliveries)["webhook"]
        assert (counted["received"], counted["duplicates"], counted["raw_repeats"]) == (1, 0, 1)
    finally:
        await peer.stop()


async def test_a_hanging_receiver_takes_nothing_and_an_ok_one_records_lead_and_step() -> None:
    peer = HttpPeer(hang_seconds=3.0)
    await peer.start()
    try:
        await peer.set_mode("hang")
        async with httpx.AsyncClient(timeout=0.5) as client:
            with pytest.raises(httpx.ReadTimeout):
                await client.post(peer.url, content=BODY, headers={"webhook-id": "m1"})
            assert peer.received.deliveries == []
            await peer.set_mode("ok")
            r = await client.post(peer.url, content=BODY, headers={"webhook-id": "m1"})
        assert r.status_code == 200
        assert peer.received.deliveries == [Delivery("webhook", "m1", "lead-7", "touch-2")]
    finally:
        await peer.stop()


async def test_the_smtp_peer_records_the_lead_and_can_hang_or_refuse() -> None:
    peer = SmtpPeer(hang_seconds=3.0)
    await peer.start()
    try:
        async def send(timeout: float = 5.0) -> None:
            await aiosmtplib.send(EMAIL, sender="n@example.test",
                                  recipients=["lead-7@chaos.example.test"],
                                  hostname="127.0.0.1", port=peer.port, timeout=timeout)
        await peer.set_mode("hang")
        with pytest.raises(aiosmtplib.SMTPTimeoutError):
            await send(timeout=1.0)
        await peer.set_mode("refuse")
        with pytest.raises(aiosmtplib.SMTPConnectError):
            await send()
        assert peer.received.deliveries == []
        await peer.set_mode("ok")  # the same port again
        await send()
        assert peer.received.deliveries == [Delivery("email", "e1", "lead-7", None)]
    finally:
        await peer.stop()

