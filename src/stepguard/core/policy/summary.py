"""What the end user reads on the step-up prompt: a rule's ``summary`` template, rendered.

Templates are policy data, values are request data, so rendering is deliberately dumb:

- Placeholders are ``{action}`` and ``{context.KEY}`` (``{context.a.b}`` reads nested maps).
  They are found with a regular expression; ``str.format`` is never called, so there is no
  attribute access, indexing, conversion (``!r``) or format spec (``:>99999``). Anything else
  between braces is left as written.
- Keys are looked up in mappings only (``{context.__class__}`` is just a missing key).
- A missing value, or ``null``, renders as ``?``. Other values go through ``str()``; control
  and invisible formatting characters (bidi overrides, zero-width spaces) become ``\ufffd`` so
  a value cannot reorder or hide what the prompt says; each value and the whole text are
  capped in length.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from typing import Any, Final

MISSING: Final = "?"
ELLIPSIS: Final = "\u2026"
MAX_VALUE_LENGTH: Final = 64
MAX_SUMMARY_LENGTH: Final = 200

_KEY = r"[A-Za-z_][A-Za-z0-9_-]*"
_PLACEHOLDER: Final = re.compile(r"\{(action|context(?:\." + _KEY + r")+)\}")
_BRACED: Final = re.compile(r"\{[^{}]*\}")
_UNSAFE_CATEGORIES: Final = frozenset({"Cc", "Cf", "Zl", "Zp"})


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + ELLIPSIS


def _clean(text: str) -> str:
    if text.isprintable():
        return text
    return "".join(
        "\ufffd" if unicodedata.category(char) in _UNSAFE_CATEGORIES else char for char in text
    )


def _show(value: Any) -> str:
    if value is None:
        return MISSING
    return _clip(_clean(str(value)), MAX_VALUE_LENGTH)


def _lookup(context: Mapping[str, Any], path: str) -> Any:
    value: Any = context
    for key in path.split("."):
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    return value


def check_template(template: str) -> str | None:
    """Why ``template`` is not a valid summary, or ``None`` when it is (used at load)."""
    if not template.strip():
        return "the summary is empty"
    for braced in _BRACED.finditer(template):
        if _PLACEHOLDER.fullmatch(braced.group()) is None:
            return (
                f"unsupported placeholder {braced.group()!r} "
                "(use {action} or {context.KEY}; no indexes, conversions or format specs)"
            )
    return None


def default_summary(*, action: str, context: Mapping[str, Any]) -> str:
    """``payments.transfer (amount=100, payee=ACME)``: the action and its sorted context."""
    head = _clip(_clean(action), MAX_VALUE_LENGTH)
    if not context:
        return head
    parts = [
        f"{_clip(_clean(str(key)), MAX_VALUE_LENGTH)}={_show(context[key])}"
        for key in sorted(context, key=str)
    ]
    return _clip(f"{head} ({', '.join(parts)})", MAX_SUMMARY_LENGTH)


def render_summary(template: str | None, *, action: str, context: Mapping[str, Any]) -> str:
    """Render a rule's summary for the step-up prompt; without a template, the default."""
    if not template:
        return default_summary(action=action, context=context)

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == "action":
            return _show(action)
        return _show(_lookup(context, name.removeprefix("context.")))

    return _clip(_PLACEHOLDER.sub(substitute, template), MAX_SUMMARY_LENGTH)
