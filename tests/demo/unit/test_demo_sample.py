"""samples/events.jsonl is what `python -m deploy.demo.sample` writes with its defaults."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import orjson

from deploy.demo.sample import DEFAULT_OUT, main, sample
from schemas import validate_event


def test_the_shipped_sample_is_the_generator_s_output(tmp_path: Path) -> None:
    out = tmp_path / "events.jsonl"
    assert main(["--out", str(out)]) == 0
    assert out.read_bytes() == DEFAULT_OUT.read_bytes(), \
        "regenerate it: python -m deploy.demo.sample"


def test_the_sample_is_valid_events_in_time_order_over_the_days_asked() -> None:
    start = datetime(2026, 9, 1, tzinfo=UTC)
    events = list(sample(40, 30, 3, start))
    assert all(validate_event(e) == [] for e in events)
    times = [datetime.fromisoformat(e["time"]) for e in events]
    assert times == sorted(times)
    assert start <= times[0] and times[-1] < datetime(2026, 10, 1, tzinfo=UTC)
    assert len({(e["source"], e["id"]) for e in events}) == len(events)
    kinds = Counter(e["type"] for e in events)
    assert kinds["crm.lead_upserted"] == 40 and kinds["web.page_viewed"] > 40
    again = [orjson.dumps(e) for e in sample(40, 30, 3, start)]
    assert again == [orjson.dumps(e) for e in events]  # seeded: the same every time
