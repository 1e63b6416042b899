"""The JSON codec of the services' PostgreSQL engine writes what the stdlib's `json` wrote for
the same documents, so rows written before and after the switch to orjson read the same."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from services.common.db.engine import json_text, make_engine

scalars = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20) \
    | st.floats(allow_nan=False, allow_infinity=False)
documents = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    st.text(max_size=8) | st.integers(-100, 100), inner, max_size=4), max_leaves=20)


@given(documents)
def test_written_json_reads_back_as_the_stdlib_json_of_the_same_document(doc: Any) -> None:
    assert json.loads(json_text(doc)) == json.loads(json.dumps(doc))


def test_non_string_keys_become_strings_as_with_the_stdlib() -> None:
    assert json.loads(json_text({1: "a", "b": {2: None}})) == {"1": "a", "b": {"2": None}}


def test_the_engine_decodes_and_encodes_json_with_this_codec() -> None:
    engine = make_engine("postgresql+asyncpg://u@127.0.0.1:1/db", schema="s")
    dialect: Any = engine.dialect
    assert dialect._json_serializer is json_text
    assert dialect._json_deserializer('{"a": [1, 2.5]}') == {"a": [1, 2.5]}
