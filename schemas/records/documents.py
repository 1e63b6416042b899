"""The JSON Schema document of each record model, with its example, as committed next to the
models (`schemas/records/<name>.schema.json`). The models are the source; regenerate the files
after changing one with `python -m schemas.records --write` (a test fails while they differ)."""

from __future__ import annotations

import json
import re
from importlib.resources import files
from typing import Any

from schemas.records.base import Record
from schemas.registry import BASE_URI


def file_stem(model: type[Record]) -> str:
    """`ScoredEvent` -> `scored-event`: the stem of the schema and example file names."""
    return re.sub(r"(?<!^)(?=[A-Z])", "-", model.__name__).lower()


def schema_id(model: type[Record]) -> str:
    return f"{BASE_URI}records/{file_stem(model)}.json"


def example(model: type[Record]) -> dict[str, Any]:
    """The example record (`examples/<stem>.json`), checked against the model."""
    text = files("schemas.records").joinpath("examples", f"{file_stem(model)}.json").read_text(
        encoding="utf-8")
    return model.model_validate_json(text).model_dump(mode="json")


def document(model: type[Record]) -> dict[str, Any]:
    """The JSON Schema (Draft 2020-12) of a record model, with `$id`, topic and example."""
    schema = model.model_json_schema(mode="validation")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": schema_id(model),
            "x-topic": model.TOPIC, **schema, "examples": [example(model)]}


def render(model: type[Record]) -> str:
    return json.dumps(document(model), indent=2, ensure_ascii=False) + "\n"


def committed(model: type[Record]) -> str:
    """The committed schema file's text ('' when missing)."""
    resource = files("schemas.records").joinpath(f"{file_stem(model)}.schema.json")
    return resource.read_text(encoding="utf-8") if resource.is_file() else ""
