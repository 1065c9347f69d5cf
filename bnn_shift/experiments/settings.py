"""Checking an experiment's config dataclass before any work: each field's value against the
type its annotation declares (as read from a TOML file or flags) and against range rules."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

Rule = tuple[Callable[[Any], bool], str]  # (test of a value, what the value must be)

ONE_VALUE = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string"}
LIST_OF = {"int": "integers", "float": "numbers", "str": "strings"}


def check_fields(config: Any, rules: Mapping[str, Rule]) -> None:
    """Raise a ValueError naming the first field of the dataclass `config` whose value does not
    fit its annotation (a bool is not a number, 2.5 not an int, a string not a list) or, when not
    None, fails its rule."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        test, must = rules.get(f.name, (lambda v: True, ""))
        if not matches_type(value, str(f.type)):
            wanted = describe_type(str(f.type)) + (f" ({must})" if must else "")
            raise ValueError(f"{f.name} is {value!r}; give {wanted}")
        if value is not None and not test(value):
            raise ValueError(f"{f.name} is {value!r}; it must be {must}")


def matches_type(value: Any, annotation: str) -> bool:
    """Whether value fits an annotation written as alternatives of None, bool, int, float, str
    and tuple[X, ...] (bools are not numbers, integral floats are not ints, floats are finite)."""
    for option in (a.strip() for a in annotation.split("|")):
        if option.startswith("tuple["):
            inner = option.removeprefix("tuple[").removesuffix(", ...]")
            if isinstance(value, tuple) and all(matches_type(v, inner) for v in value):
                return True
        elif option == "None" and value is None:
            return True
        elif option == "bool" and isinstance(value, bool):
            return True
        elif option == "str" and isinstance(value, str):
            return True
        elif isinstance(value, bool) or not isinstance(value, int | float):
            continue
        elif option == "int" and isinstance(value, int):
            return True
        elif option == "float" and math.isfinite(value):
            return True
    return False


def describe_type(annotation: str) -> str:
    """An annotation in words: "tuple[int, ...] | None" -> "a list of integers or none"."""
    parts = []
    for option in (a.strip() for a in annotation.split("|")):
        inner = option.removeprefix("tuple[").removesuffix(", ...]")
        parts.append(f"a list of {LIST_OF[inner]}" if inner != option else ONE_VALUE.get(option))
    return " or ".join(p or "none (leave it out)" for p in parts)
