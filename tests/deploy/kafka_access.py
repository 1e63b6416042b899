"""What each service really does with Kafka, read from its code, so the chart's KafkaUser ACLs
are checked against it rather than against a second hand-written list.

Topics: every use of a `Topics` name (`topics.events`, `self.topics.deadletter`,
`Topics(prefix).events` ...) in services/<service>/, classified by the call it is passed to: a
consumer (`make_consumer`, faust's `app.topic` of an agent's source) reads it; a comparison, a
metric label, a partition count or the health watch of the scoring worker's input only looks at
it; anything else (an `Outgoing` row, a
publisher, a dead-letter builder ...) is taken as a write, so a new use the scan does not know
fails the ACL test until someone looks at it. Groups: the `group_id=` of each `make_consumer`
call, built from the settings' default group and the code's suffixes."""

from __future__ import annotations

import ast
from collections import defaultdict
from dataclasses import fields
from functools import cache
from typing import Any

from services.common.kafka.topics import Topics
from tests.deploy.chart_support import ROOT

# Topics attribute -> unprefixed topic name
TOPIC_NAMES = {f.name: getattr(Topics(), f.name) for f in fields(Topics) if not f.init}
READ_CALLS = frozenset({"make_consumer", "topic"})
LOOK_CALLS = frozenset({"wait_for_partitions", "partition_count", "labels", "set", "watch"})


def _is_topics(node: ast.expr) -> bool:
    if isinstance(node, ast.Name):
        return node.id == "topics"
    if isinstance(node, ast.Attribute):
        return node.attr == "topics"
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
        and node.func.id == "Topics"


def _call_name(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


def _use(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> str:
    """Read, Write or Describe: what the innermost call or comparison around `node` does."""
    parent = parents.get(node)
    while parent is not None and not isinstance(parent, ast.stmt):
        if isinstance(parent, ast.Compare):
            return "Describe"
        if isinstance(parent, ast.Call):
            name = _call_name(parent)
            return "Read" if name in READ_CALLS else "Describe" if name in LOOK_CALLS \
                else "Write"
        parent = parents.get(parent)
    return "Write"


def _trees(service: str) -> list[ast.Module]:
    return [ast.parse(path.read_text())
            for path in sorted((ROOT / "services" / service).rglob("*.py"))]


def _parents(tree: ast.AST) -> dict[ast.AST, ast.AST]:
    return {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


@cache
def topic_uses(service: str) -> dict[str, frozenset[str]]:
    """Unprefixed topic name -> the operations the service's code needs on it."""
    uses: dict[str, set[str]] = defaultdict(set)
    for tree in _trees(service):
        parents = _parents(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in TOPIC_NAMES \
                    and _is_topics(node.value):
                uses[TOPIC_NAMES[node.attr]].add(_use(node, parents))
    return {topic: frozenset(ops) for topic, ops in uses.items()}


def consumer_groups(service: str, base: str) -> set[str]:
    """The groups of the service's `make_consumer` calls, `base` being its prefixed default
    group (the `group` variable of the code): `group` itself, or an f-string around it."""
    groups: set[str] = set()
    for tree in _trees(service):
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and _call_name(node) == "make_consumer"):
                continue
            (value,) = [kw.value for kw in node.keywords if kw.arg == "group_id"]
            groups.add(_render_group(value, base))
    return groups


def _render_group(value: ast.expr, base: str) -> str:
    if isinstance(value, ast.Name):
        return base
    assert isinstance(value, ast.JoinedStr), ast.dump(value)
    parts = []
    for part in value.values:
        if isinstance(part, ast.Constant):
            parts.append(str(part.value))
        else:
            assert isinstance(part, ast.FormattedValue) and isinstance(part.value, ast.Name)
            parts.append(base)
    return "".join(parts)


def allows(acls: list[dict[str, Any]], kind: str, name: str, op: str) -> bool:
    """Whether Kafka's simple authorizer lets these ACLs do `op` on the resource (literal and
    prefixed patterns; Read, Write, Delete and Alter imply Describe)."""
    for acl in acls:
        resource = acl["resource"]
        if resource["type"] != kind:
            continue
        pattern = resource.get("patternType", "literal")
        if not (name == resource["name"] if pattern == "literal"
                else name.startswith(resource["name"])):
            continue
        ops = set(acl["operations"])
        if op in ops or "All" in ops or (op == "Describe"
                                         and ops & {"Read", "Write", "Delete", "Alter"}):
            return True
    return False
