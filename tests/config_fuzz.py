"""Hypothesis helpers shared by the config-file loader tests (scoring models, programs): random
documents made of the format's own keys, random mutations of a valid document, and the check
that a loader either loads or raises its own error naming the file — never anything else."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml
from hypothesis import strategies as st

from services.common.config.files import ConfigFileError

text = st.text(st.characters(codec="utf-8"), max_size=8)


def json_values(keys: Sequence[str], words: Sequence[str],
                floats: bool = True) -> st.SearchStrategy[Any]:
    """JSON-like values whose mapping keys are mostly the format's own `keys`."""
    scalars = st.none() | st.booleans() | st.integers() | text | st.sampled_from(list(words))
    if floats:
        scalars = scalars | st.floats()
    return st.recursive(
        scalars,
        lambda children: st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(list(keys)) | text, children, max_size=4),
        max_leaves=15,
    )


def mutate(document: Any, data: st.DataObject, values: st.SearchStrategy[Any]) -> Any:
    """Walk down to a random place of `document` and replace or delete it (in place)."""
    node = document
    while True:
        key = data.draw(st.sampled_from(list(node) if isinstance(node, dict) else
                                        list(range(len(node)))))
        if isinstance(node[key], dict | list) and node[key] and data.draw(st.booleans()):
            node = node[key]
            continue
        if isinstance(node, dict) and data.draw(st.booleans()):
            del node[key]
        else:
            node[key] = data.draw(values)
        return document


def load_or_refuse(directory: Path, document: Any, load: Callable[[list[Path]], object],
                   error: type[ConfigFileError]) -> None:
    """`load` the document written as YAML: fine, or `error` with problems naming the file."""
    path = directory / "random.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    try:
        load([path])
    except error as exc:
        refused = exc.problems
    else:
        return
    assert refused
    assert all(problem.file == str(path) for problem in refused)
