"""CEL conditions: compiled and checked once at load, executed against one prepared context.

Built on the ``common-expression-language`` package (``import cel``, Rust bindings). A
condition sees five variables, the mappings of :class:`~stepguard.core.policy.model.PolicyInput`
with the same names: ``request``, ``context``, ``subject``, ``session`` and ``risk``.

Static checks at load (:func:`compile_condition`):

- the expression parses;
- every identifier it reads is one of the five roots, a CEL type name (``int`` in
  ``type(x) == int``), or a variable bound by a comprehension macro (the ``x`` in
  ``list.exists(x, x > 1)``) and used only inside that macro's parentheses. ``Program.variables()``
  lists every identifier, bound or not, so the binding scopes are recovered from the tokens.
  The two-variable forms (``all(k, v, ...)``) and ``cel.bind`` are not supported by the
  library at run time, so their extra names are rejected here as unknown.

At run time (:meth:`Condition.holds`): the result must be a bool; any exception (a missing map
key, a type error, a conversion error) becomes a
:class:`~stepguard.core.errors.PolicyEvaluationError` naming the rule, and callers fail closed.
Reading a missing key (``context.amount`` without an amount) is such an error unless the
expression guards it with ``has(context.amount)``.

Converting Python data into CEL values dominates the cost (about 2 to 3 µs per value), so the
engine builds one :class:`cel.Context` per evaluation, lazily, holding only what the candidate
rules' conditions can observe (:func:`read_fields`: ``risk.level`` converts one value, not the
whole ``risk`` map); executing against a prepared context costs well under 1 µs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import date, datetime, time, timedelta
from typing import Any, Final

import cel

from stepguard.core.errors import PolicyError, PolicyEvaluationError
from stepguard.core.policy.model import PolicyInput

CEL_ROOTS: Final[frozenset[str]] = frozenset({"request", "context", "subject", "session", "risk"})
"""The only free variables a condition may read."""

# CEL type names are identifiers when used as values, as in ``type(context.amount) == int``.
_TYPE_NAMES: Final = frozenset(
    {"bool", "bytes", "double", "int", "uint", "string", "list", "map", "null_type", "type", "dyn"}
)

# Macros whose first argument names a variable bound inside the call's parentheses.
_BINDING_MACROS: Final = frozenset({"all", "exists", "exists_one", "map", "filter"})

_TOKEN: Final = re.compile(
    r"""
      (?P<space>\s+|//[^\n]*)
    | (?P<string>
          (?:[rR][bB]?|[bB][rR])(?:\"\"\"[\s\S]*?\"\"\"|'''[\s\S]*?'''|"[^"\n]*"|'[^'\n]*')
        | [bB]?(?:\"\"\"(?:\\[\s\S]|[^\\])*?\"\"\"|'''(?:\\[\s\S]|[^\\])*?'''
                 |"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*')
      )
    | (?P<number>0[xX][0-9a-fA-F]+[uU]?|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?[uU]?)
    | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<punct>[\s\S])
    """,
    re.VERBOSE,
)

_OPENERS: Final = {"(": ")", "[": "]", "{": "}"}


def _tokens(expression: str) -> list[tuple[str, str]]:
    """(kind, text) pairs, without whitespace and comments. Only used on parsed expressions."""
    out: list[tuple[str, str]] = []
    for match in _TOKEN.finditer(expression):
        kind = match.lastgroup
        if kind is None or kind == "space":
            continue
        out.append((kind, match.group()))
    return out


def _closing(tokens: list[tuple[str, str]], open_at: int) -> int:
    """Index of the bracket that closes the one at ``open_at`` (or the end)."""
    stack: list[str] = []
    for i in range(open_at, len(tokens)):
        kind, text = tokens[i]
        if kind != "punct":
            continue
        if text in _OPENERS:
            stack.append(_OPENERS[text])
        elif stack and text == stack[-1]:
            stack.pop()
            if not stack:
                return i
    return len(tokens)


def unbound_names(expression: str, names: Iterable[str]) -> list[str]:
    """Which of ``names`` are read outside the comprehension that binds them (or never bound).

    ``names`` are identifiers the CEL parser reported; each occurrence of one as a free
    identifier (not a field after ``.``) must lie inside a ``.all/.exists/.exists_one/.map/
    .filter(name, ...)`` call that binds it.
    """
    tokens = _tokens(expression)
    scopes: list[tuple[str, int, int]] = []
    for i in range(len(tokens) - 4):
        (k0, t0), (k1, t1), (k2, t2), (k3, t3), (k4, t4) = tokens[i : i + 5]
        if (
            (k0, t0) == ("punct", ".")
            and k1 == "ident"
            and t1 in _BINDING_MACROS
            and (k2, t2) == ("punct", "(")
            and k3 == "ident"
            and (k4, t4) == ("punct", ",")
        ):
            scopes.append((t3, i + 2, _closing(tokens, i + 2)))
    unbound: list[str] = []
    for name in names:
        occurrences = [
            i
            for i, (kind, text) in enumerate(tokens)
            if kind == "ident" and text == name and (i == 0 or tokens[i - 1] != ("punct", "."))
        ]
        inside = all(
            any(bound == name and start < i < end for bound, start, end in scopes)
            for i in occurrences
        )
        if not occurrences or not inside:
            unbound.append(name)
    return unbound


RootFields = tuple[tuple[str, frozenset[str] | None], ...]
"""For each root a condition reads: the fields it selects, or ``None`` for the whole map."""


def read_fields(expression: str, roots: Iterable[str]) -> RootFields:
    """Which fields of each root the expression can observe.

    A root used only as ``root.field`` (not ``root.method(...)``) exposes just those fields,
    so only they need converting into CEL values: a missing field stays missing, and
    ``has()`` sees the same thing. Any other use (``size(context)``, ``context["k"]``,
    ``context.all(...)``), or a root the token scan cannot find, needs the whole map.
    """
    tokens = _tokens(expression)
    dot = ("punct", ".")
    found: dict[str, set[str] | None] = {root: set() for root in roots}
    for i, (kind, text) in enumerate(tokens):
        if kind != "ident" or text not in found or (i > 0 and tokens[i - 1] == dot):
            continue
        selected = found[text]
        if (
            i + 2 < len(tokens)
            and tokens[i + 1] == dot
            and tokens[i + 2][0] == "ident"
            and (i + 3 >= len(tokens) or tokens[i + 3] != ("punct", "("))
        ):
            if selected is not None:
                selected.add(tokens[i + 2][1])
        else:
            found[text] = None
    return tuple(
        (root, frozenset(fields) if fields else None) for root, fields in sorted(found.items())
    )


def merge_fields(needs: Iterable[RootFields]) -> RootFields:
    """The union of several conditions' needs (``None``, the whole map, absorbs)."""
    merged: dict[str, frozenset[str] | None] = {}
    for need in needs:
        for root, fields in need:
            if root in merged:
                current = merged[root]
                merged[root] = None if current is None or fields is None else current | fields
            else:
                merged[root] = fields
    return tuple(sorted(merged.items()))


class Condition:
    """A rule's compiled ``when:``. Holds the program; never re-parses."""

    __slots__ = ("_program", "expression", "fields", "rule")

    def __init__(self, *, program: cel.Program, expression: str, fields: RootFields, rule: str):
        self._program = program
        self.expression = expression
        self.fields = fields  # what the expression can read, see read_fields
        self.rule = rule

    @property
    def roots(self) -> frozenset[str]:
        return frozenset(root for root, _ in self.fields)

    def holds(self, context: cel.Context) -> bool:
        """Run against a prepared context. Raises PolicyEvaluationError on anything but a bool."""
        try:
            result = self._program.execute(context)
        except KeyError as exc:
            key = exc.args[0] if exc.args else "?"
            raise PolicyEvaluationError(
                f"condition reads a missing key {key!r}; guard it with has(...)", rule=self.rule
            ) from exc
        except Exception as exc:
            # The bindings raise TypeError, ValueError, RuntimeError, ZeroDivisionError...
            raise PolicyEvaluationError(
                f"condition failed: {type(exc).__name__}: {exc}", rule=self.rule
            ) from exc
        if result is True or result is False:
            return result
        raise PolicyEvaluationError(
            f"condition returned {type(result).__name__}, not a bool", rule=self.rule
        )

    def __repr__(self) -> str:
        return f"Condition({self.expression!r}, rule={self.rule!r})"


def compile_condition(expression: str, *, source: str, rule: str, field: str = "when") -> Condition:
    """Compile and statically check a condition. Raises PolicyError naming source, rule, field."""
    if not expression.strip():
        raise PolicyError("the condition is empty", source=source, rule=rule, field=field)
    try:
        program = cel.compile(expression)
    except Exception as exc:
        raise PolicyError(
            f"CEL syntax error: {exc}", source=source, rule=rule, field=field
        ) from exc
    variables = set(program.variables())
    extra = sorted(variables - CEL_ROOTS - _TYPE_NAMES)
    unknown = unbound_names(expression, extra) if extra else []
    if unknown:
        allowed = ", ".join(sorted(CEL_ROOTS))
        listed = ", ".join(repr(name) for name in unknown)
        raise PolicyError(
            f"unknown variable {listed} in condition (conditions may read: {allowed})",
            source=source,
            rule=rule,
            field=field,
        )
    return Condition(
        program=program,
        expression=expression,
        fields=read_fields(expression, variables & CEL_ROOTS),
        rule=rule,
    )


_SCALARS: Final = frozenset(
    {str, int, float, bool, bytes, type(None), datetime, date, time, timedelta}
)


def _plain(value: Any) -> Any:
    """Python data in the shapes the bindings convert: dicts, lists and scalars.

    Sets become sorted lists (when sortable), tuples lists, other mappings dicts. Anything
    else is passed through; the bindings reject what they cannot convert, which becomes an
    evaluation error.
    """
    kind = type(value)
    if kind in _SCALARS:
        return value
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, set | frozenset):
        items = [_plain(item) for item in value]
        try:
            return sorted(items)
        except TypeError:
            return items
    return value


def _root(inp: PolicyInput, root: str) -> Mapping[str, Any]:
    if root == "request":
        return inp.request
    if root == "context":
        return inp.context
    if root == "subject":
        return inp.subject
    if root == "session":
        return inp.session
    return inp.risk


def cel_context(inp: PolicyInput, needs: RootFields) -> cel.Context:
    """One prepared context with what ``needs`` asks for from ``inp``'s mappings."""
    values: dict[str, Any] = {}
    for root, fields in needs:
        data = _root(inp, root)
        if fields is None:
            values[root] = _plain(data)
        else:
            values[root] = {key: _plain(data[key]) for key in fields if key in data}
    return cel.Context(variables=values)
