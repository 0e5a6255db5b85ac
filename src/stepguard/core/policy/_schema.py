"""Strict YAML reading shared by the policy loader and the cases runner (private).

YAML is parsed with the safe loader only (libyaml's when present). Checks name the place of
each problem in a :class:`~stepguard.core.errors.PolicyError`: the source, the rule (if any)
and a dotted field.
"""

from __future__ import annotations

from typing import Any, NoReturn

import yaml

from stepguard.core.errors import PolicyError

# libyaml's parser when present (fast); either way only the safe constructor builds objects.
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class Where:
    """Where a check runs, to name it in errors.

    ``prefix`` is prepended to field names (``cases[2].``) and ``label`` to messages
    (``case 'large transfer': ``).
    """

    __slots__ = ("label", "prefix", "rule", "source")

    def __init__(
        self, source: str, *, rule: str | None = None, prefix: str = "", label: str = ""
    ) -> None:
        self.source = source
        self.rule = rule
        self.prefix = prefix
        self.label = label

    def fail(self, message: str, field: str | None) -> NoReturn:
        if field is not None:
            field = self.prefix + field
        elif self.prefix:
            field = self.prefix.rstrip(".")
        label = f"{self.label}: " if self.label else ""
        raise PolicyError(label + message, source=self.source, rule=self.rule, field=field)


def describe(value: Any) -> str:
    """A short, type-revealing description of a YAML value for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, str):
        return f"string {value!r}"
    if isinstance(value, int | float):
        return f"number {value!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def mapping(where: Where, value: Any, field: str | None, what: str) -> dict[Any, Any]:
    if not isinstance(value, dict):
        where.fail(f"{what} must be a mapping, not {describe(value)}", field)
    return value


def known_fields(
    where: Where, value: dict[Any, Any], allowed: tuple[str, ...], prefix: str = ""
) -> None:
    for key in value:
        if key not in allowed:
            hint = ", ".join(allowed)
            where.fail(f"unknown field {key!r} (expected one of: {hint})", f"{prefix}{key}")


def string(where: Where, value: Any, field: str) -> str:
    """A non-blank string."""
    if not isinstance(value, str):
        where.fail(f"must be a string, not {describe(value)}", field)
    if not value.strip():
        where.fail("must not be empty", field)
    return value


def boolean(where: Where, value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        where.fail(f"must be true or false, not {describe(value)}", field)
    return value


def integer(where: Where, value: Any, field: str, *, minimum: int) -> int:
    """An int (a YAML boolean is not one) of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        where.fail(f"must be an integer, not {describe(value)}", field)
    if value < minimum:
        where.fail(f"must be {minimum} or more, not {value}", field)
    return value


def string_list(where: Where, value: Any, field: str, *, no_spaces: bool) -> tuple[str, ...]:
    """A non-empty list of non-blank strings, deduplicated in order."""
    if not isinstance(value, list):
        where.fail(f"must be a list of strings, not {describe(value)}", field)
    if not value:
        where.fail("must not be empty (leave the field out to match anything)", field)
    items: list[str] = []
    for i, item in enumerate(value):
        text = string(where, item, f"{field}[{i}]")
        if no_spaces and any(char.isspace() for char in text):
            where.fail(f"{text!r} must not contain whitespace", f"{field}[{i}]")
        items.append(text)
    return tuple(dict.fromkeys(items))


def _check_duplicate_keys(root: yaml.Node, where: Where) -> None:
    """``safe_load`` silently keeps the last of duplicate keys; find them on the node tree."""
    seen: set[int] = set()
    stack: list[yaml.Node] = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:  # aliases share nodes
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            keys: set[tuple[str, str]] = set()
            for key_node, value_node in node.value:
                if isinstance(key_node, yaml.ScalarNode):
                    key = (key_node.tag, key_node.value)
                    if key in keys:
                        where.fail(
                            f"duplicate key {key_node.value!r} "
                            f"(line {key_node.start_mark.line + 1})",
                            str(key_node.value),
                        )
                    keys.add(key)
                stack.extend((key_node, value_node))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)


def parse_yaml(text: str, where: Where, *, what: str) -> dict[Any, Any]:
    """The top-level mapping of ``text``; rejects YAML errors, duplicate keys, non-mappings."""
    # One parse: compose the node tree (libyaml when present), check it, then build Python
    # data from it with the safe constructor, exactly what ``yaml.safe_load`` would build.
    loader = _SafeLoader(text)
    try:
        root = loader.get_single_node()
        data = None
        if root is not None:
            _check_duplicate_keys(root, where)
            data = loader.construct_document(root)
    except yaml.YAMLError as exc:
        where.fail(f"invalid YAML: {exc}", None)
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        where.fail(f"the {what} must be a YAML mapping at the top, not {describe(data)}", None)
    return data
