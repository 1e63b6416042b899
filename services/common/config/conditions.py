"""`when:` conditions of config files (scoring models, orchestrator programs), compiled once
into fast predicates (pure, no I/O).

A condition is a mapping of field name -> matcher, all of which must hold; `any: [cond, ...]`,
`all: [cond, ...]` and `not: cond` combine conditions. Field names are dotted paths: the exact
key is tried first (profiles are flattened to `attributes.budget`), then nested mappings are
walked. A matcher is a value (equals), a list of values (in) or a mapping of operators that must
all hold: equals, not_equals, in, not_in, matches, not_matches (+ ignore_case), gt, gte, lt, lte,
exists, contains.

Semantics, chosen so that a predicate never raises whatever the data:
- a missing field fails every operator except `exists: false` and the `not_*` operators (which
  hold: "not equal to x" is true of a field that is not there);
- `exists: true` means present and not null;
- a value of the wrong type fails the operator (`gt` on text, `matches` on a number);
- booleans are not numbers: `equals: 1` does not match `true`;
- `in` on a list-valued field holds when any element is in the set; `contains` holds for a list
  holding the value or for text containing the text.

Predicates run on hot paths (every event a scoring rule may match), so everything is decided at
compile time: regexes are compiled, sets are frozen, an undotted field is a plain `dict.get`.
"""

from __future__ import annotations

import difflib
import operator
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

Predicate = Callable[[Mapping[str, Any]], bool]
"""A compiled `when:` condition, applied to a flat mapping (event `data`, or the lead profile)."""
Test = Callable[[Any], bool]
"""A compiled matcher, applied to one field's value (`MISSING` when the field is absent)."""
PathPart = str | int
Builder = Callable[[Any, tuple[PathPart, ...], bool], Test]

COMBINATORS = ("any", "all", "not")
_NUMBERS = (int, float)


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<missing>"


MISSING: Any = _Missing()
"""The value a test sees for an absent field; equal to nothing but itself."""


def always(_: Mapping[str, Any]) -> bool:
    """The predicate of an empty (or absent) condition."""
    return True


class ConditionError(ValueError):
    """An invalid condition. `path` is relative to the condition (`path.matches`,
    `any[1].seniority.in[0]`); `parts` is the same path as keys and list indices."""

    def __init__(self, path: str, message: str, parts: Sequence[PathPart] = ()) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message
        self.parts = tuple(parts)


def compile_condition(spec: Mapping[str, Any]) -> Predicate:
    """Compile a `when:` condition into a predicate over a data mapping (ConditionError if
    invalid). An empty condition always holds."""
    return _condition(spec, ())


def format_path(parts: Sequence[PathPart]) -> str:
    """`("any", 0, "path", "matches")` -> `any[0].path.matches`."""
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _error(at: tuple[PathPart, ...], message: str) -> ConditionError:
    return ConditionError(format_path(at), message, at)


def _condition(spec: Any, at: tuple[PathPart, ...]) -> Predicate:
    if not isinstance(spec, Mapping):
        raise _error(at, "must be a mapping of field name -> matcher")
    return _all_of([_entry(key, value, (*at, key)) for key, value in spec.items()])


def _entry(key: Any, value: Any, at: tuple[PathPart, ...]) -> Predicate:
    if not isinstance(key, str) or not key:
        raise _error(at[:-1], f"field name {key!r} must be a non-empty string")
    if key in ("any", "all"):
        if not isinstance(value, list) or not value:
            raise _error(at, "must be a non-empty list of conditions")
        checks = [_condition(item, (*at, i)) for i, item in enumerate(value)]
        return _any_of(checks) if key == "any" else _all_of(checks)
    if key == "not":
        inner = _condition(value, at)
        return lambda data: not inner(data)
    return _field(key, _matcher(value, at))


def _all_of(checks: Sequence[Callable[[Any], bool]]) -> Callable[[Any], bool]:
    if not checks:
        return always
    if len(checks) == 1:
        return checks[0]
    frozen = tuple(checks)

    # plain loops: twice as fast as all()/any() over a generator, and this is the hot path
    def all_hold(data: Any) -> bool:
        for check in frozen:  # noqa: SIM110
            if not check(data):
                return False
        return True

    return all_hold


def _any_of(checks: Sequence[Predicate]) -> Predicate:
    frozen = tuple(checks)

    def any_holds(data: Mapping[str, Any]) -> bool:
        for check in frozen:  # noqa: SIM110
            if check(data):
                return True
        return False

    return any_holds


def _field(name: str, test: Test) -> Predicate:
    if "." not in name:
        return lambda data: test(data.get(name, MISSING))
    parts = tuple(name.split("."))

    def dotted(data: Mapping[str, Any]) -> bool:
        value = data.get(name, MISSING)
        if value is MISSING:
            value = data
            for part in parts:
                value = value.get(part, MISSING) if isinstance(value, Mapping) else MISSING
        return test(value)

    return dotted


def _matcher(value: Any, at: tuple[PathPart, ...]) -> Test:
    if isinstance(value, Mapping):
        return _operators(value, at)
    if isinstance(value, list):
        return _in(_scalars(value, at))
    return _equals(_scalar(value, at))


def _operators(spec: Mapping[Any, Any], at: tuple[PathPart, ...]) -> Test:
    if not spec:
        raise _error(at, "must name at least one operator")
    ignore_case = spec.get("ignore_case", False)
    if "ignore_case" in spec:
        _boolean(ignore_case, (*at, "ignore_case"))
        if "matches" not in spec and "not_matches" not in spec:
            raise _error((*at, "ignore_case"), "only applies to matches / not_matches")
    tests = []
    for name, arg in spec.items():
        if name == "ignore_case":
            continue
        build = _OPERATORS.get(name) if isinstance(name, str) else None
        if build is None:
            raise _error((*at, str(name)), _unknown_operator(str(name)))
        tests.append(build(arg, (*at, name), ignore_case))
    return _all_of(tests)


def _unknown_operator(name: str) -> str:
    close = difflib.get_close_matches(name, [*_OPERATORS, "ignore_case"], n=1)
    hint = f"did you mean '{close[0]}'?" if close else "expected one of " + ", ".join(_OPERATORS)
    return f"unknown operator ({hint})"


# -- arguments -------------------------------------------------------------------------------


def _scalar(arg: Any, at: tuple[PathPart, ...]) -> Any:
    if arg is None or isinstance(arg, str | int | float):
        return arg
    raise _error(at, "must be a single value (text, number, true/false or null)")


def _scalars(arg: Any, at: tuple[PathPart, ...]) -> list[Any]:
    if not isinstance(arg, list) or not arg:
        raise _error(at, "must be a non-empty list of values")
    return [_scalar(item, (*at, i)) for i, item in enumerate(arg)]


def _number(arg: Any, at: tuple[PathPart, ...]) -> float:
    if isinstance(arg, _NUMBERS) and not isinstance(arg, bool):
        return arg
    raise _error(at, "must be a number")


def _boolean(arg: Any, at: tuple[PathPart, ...]) -> bool:
    if isinstance(arg, bool):
        return arg
    raise _error(at, "must be true or false")


def _regex(arg: Any, at: tuple[PathPart, ...], ignore_case: bool) -> re.Pattern[str]:
    if not isinstance(arg, str):
        raise _error(at, "must be a regular expression (text)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # e.g. "possible nested set": ambiguous, so refuse
            return re.compile(arg, re.IGNORECASE if ignore_case else 0)
    except re.error as exc:
        where = f" at position {exc.pos}" if exc.pos is not None else ""
        raise _error(at, f"invalid regular expression: {exc.msg}{where}") from None
    except (OverflowError, RecursionError, Warning) as exc:
        raise _error(at, f"invalid regular expression: {exc}") from None


# -- tests on one value ----------------------------------------------------------------------


def _equals(expected: Any) -> Test:
    if expected is None or isinstance(expected, bool):
        return lambda value: value is expected
    if isinstance(expected, str):
        return lambda value: value == expected
    return lambda value: value == expected and value.__class__ is not bool


def _in(values: list[Any]) -> Test:
    members = frozenset(v for v in values if not isinstance(v, bool))
    flags = frozenset(v for v in values if isinstance(v, bool))

    def one(value: Any) -> bool:
        if value.__class__ is bool:
            return value in flags
        try:
            return value in members
        except TypeError:  # unhashable (a list or a mapping): in no set of scalars
            return False

    def test(value: Any) -> bool:
        if value.__class__ is str:
            return value in members
        if isinstance(value, list):
            return any(one(item) for item in value)
        return one(value)

    return test


def _matches(regex: re.Pattern[str]) -> Test:
    search = regex.search
    return lambda value: isinstance(value, str) and search(value) is not None


def _compare(op: Callable[[Any, Any], bool], bound: float) -> Test:
    def test(value: Any) -> bool:
        return value.__class__ in _NUMBERS and op(value, bound)

    return test


def _exists(expected: bool) -> Test:
    return lambda value: (value is not MISSING and value is not None) is expected


def _contains(expected: Any) -> Test:
    equal = _equals(expected)
    text = expected if isinstance(expected, str) else None

    def test(value: Any) -> bool:
        if isinstance(value, str):
            return text is not None and text in value
        if isinstance(value, list):
            return any(equal(item) for item in value)
        return False

    return test


def _negate(test: Test) -> Test:
    return lambda value: not test(value)


_OPERATORS: dict[str, Builder] = {
    "equals": lambda arg, at, _: _equals(_scalar(arg, at)),
    "not_equals": lambda arg, at, _: _negate(_equals(_scalar(arg, at))),
    "in": lambda arg, at, _: _in(_scalars(arg, at)),
    "not_in": lambda arg, at, _: _negate(_in(_scalars(arg, at))),
    "matches": lambda arg, at, ic: _matches(_regex(arg, at, ic)),
    "not_matches": lambda arg, at, ic: _negate(_matches(_regex(arg, at, ic))),
    "gt": lambda arg, at, _: _compare(operator.gt, _number(arg, at)),
    "gte": lambda arg, at, _: _compare(operator.ge, _number(arg, at)),
    "lt": lambda arg, at, _: _compare(operator.lt, _number(arg, at)),
    "lte": lambda arg, at, _: _compare(operator.le, _number(arg, at)),
    "exists": lambda arg, at, _: _exists(_boolean(arg, at)),
    "contains": lambda arg, at, _: _contains(_scalar(arg, at)),
}
