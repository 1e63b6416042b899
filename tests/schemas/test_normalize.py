"""schemas/normalize.py: a page view's path, search and utm derived from its url when absent."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from hypothesis import given
from hypothesis import strategies as st

from schemas import validate_event
from schemas.normalize import normalized


def page_view(**data: Any) -> dict[str, Any]:
    return {"specversion": "1.0", "id": "e-1", "source": "https://www.example.com",
            "type": "web.page_viewed", "subject": "lead-1", "data": data}


def test_a_url_only_page_view_gets_path_search_and_utm() -> None:
    url = ("https://www.example.com/pricing?plan=pro&utm_source=newsletter&utm_medium=email"
           "&utm_source=other&utm_campaign=&utm_id=7")
    assert normalized(page_view(url=url))["data"] == {
        "url": url, "path": "/pricing",
        "search": "?plan=pro&utm_source=newsletter&utm_medium=email&utm_source=other"
                  "&utm_campaign=&utm_id=7",
        "utm": {"source": "newsletter", "medium": "email"}}


def test_a_url_without_path_or_query_gets_the_root_path_only() -> None:
    assert normalized(page_view(url="https://www.example.com"))["data"] == {
        "url": "https://www.example.com", "path": "/"}


def test_fields_the_publisher_sent_are_kept_even_when_the_url_disagrees() -> None:
    event = page_view(url="https://www.example.com/pricing?utm_source=a", path="/other",
                      search="", utm={"source": "b"})
    assert normalized(event) is event


def test_other_types_and_odd_data_pass_unchanged() -> None:
    for event in ({**page_view(url="https://x.example/p"), "type": "web.form_submitted"},
                  page_view(), {**page_view(), "data": None}, page_view(url=42),
                  page_view(url="http://[::1/bad")):
        assert normalized(event) is event


def test_the_input_is_not_mutated() -> None:
    event = page_view(url="https://www.example.com/pricing")
    out = normalized(event)
    assert event["data"] == {"url": "https://www.example.com/pricing"}
    assert out["data"]["path"] == "/pricing"


segment = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)


@given(path=st.lists(segment, max_size=4), params=st.lists(st.tuples(
    st.sampled_from(["utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content",
                     "utm_x", "q"]), segment), max_size=6))
def test_a_valid_page_view_stays_valid_and_keeps_what_it_had(path: list[str],
                                                           params: list[tuple[str, str]]) -> None:
    query = "&".join(f"{quote(k)}={quote(v)}" for k, v in params)
    url = "https://www.example.com/" + "/".join(quote(p) for p in path) + (
        f"?{query}" if query else "")
    event = page_view(url=url, title="t")
    assert validate_event(event) == []
    out = normalized(event)
    assert validate_event(out) == []
    assert {k: out["data"][k] for k in event["data"]} == event["data"]
    assert out["data"]["path"].startswith("/")
    assert normalized(out) is out  # derived once: a second hop adds nothing
