"""`nurture-scoring score`: one output line per input line, what the worker would publish."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import orjson
import pytest

from schemas.records import DeadLetter, ScoredEvent
from services.scoring.entrypoints.score import NotScored, Scorer, score_stream

MODELS = [str(Path(__file__).resolve().parents[3] / "config" / "scoring")]


def event(n: int, etype: str = "web.page_viewed", **data: object) -> dict[str, object]:
    return {"specversion": "1.0", "id": f"e{n}", "source": "https://www.example.com",
            "type": etype, "subject": "lead-1", "time": f"2026-11-0{n}T10:00:00Z",
            "data": data or {"url": "https://www.example.com/pricing"}}


def test_each_line_becomes_a_scored_event_a_passed_through_record_or_a_dead_letter() -> None:
    scorer = Scorer.from_files(MODELS)
    already = scorer.score(event(1)).to_bytes()
    lines = [orjson.dumps(event(2)), b"", already, b"{not json", orjson.dumps(event(3, title="x"))]
    out = io.BytesIO()
    dead = score_stream(Scorer.from_files(MODELS), io.BytesIO(b"\n".join(lines)), out)
    got = out.getvalue().splitlines()
    assert got[1] == b""  # the blank line stays, so output line n is input line n
    got = [line for line in got if line]
    assert dead == 2 and len(got) == 4
    first = ScoredEvent.from_bytes(got[0])
    assert first.lead_id == "lead-1" and first.event["data"]["path"] == "/pricing"
    assert "pricing-page" in [c.rule for c in first.score.models["b2b"].breakdown]
    assert got[1] == already  # a scored record keeps the scores it carries
    bad_json, bad_data = DeadLetter.from_bytes(got[2]), DeadLetter.from_bytes(got[3])
    assert base64.b64decode(bad_json.value_b64 or "") == b"{not json"
    assert "not JSON" in bad_json.error and bad_json.origin.offset == 4
    assert bad_data.error.startswith("data.url") and bad_data.origin.offset == 5


def test_the_state_carries_from_one_event_of_a_lead_to_the_next() -> None:
    scorer = Scorer.from_files(MODELS)
    first = scorer.score(event(1)).score.models["b2b"].total
    second = scorer.score(event(2, url="https://www.example.com/blog/x")).score.models["b2b"]
    assert second.previous_total is not None and second.previous_total <= first
    assert second.total > second.previous_total  # the page view added to what decayed


def test_score_raises_with_the_worker_s_reason() -> None:
    with pytest.raises(NotScored, match=r"^data\.url"):
        Scorer.from_files(MODELS).score(event(1, "web.page_viewed", title="no url"))
