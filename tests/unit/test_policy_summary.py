"""Step-up prompt summaries: placeholders render, nothing else ever executes."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stepguard.core.policy.summary import (
    MAX_SUMMARY_LENGTH,
    MAX_VALUE_LENGTH,
    check_template,
    default_summary,
    render_summary,
)

TRANSFER = {"amount": 150, "currency": "EUR", "payee": "ACME"}


def render(template: str | None, context: dict[str, Any] | None = None) -> str:
    return render_summary(
        template, action="payments.transfer", context=TRANSFER if context is None else context
    )


def test_placeholders_render_context_values_and_the_action() -> None:
    assert (
        render("Transfer {context.currency} {context.amount} to {context.payee} ({action})")
        == "Transfer EUR 150 to ACME (payments.transfer)"
    )


def test_values_are_converted_with_str() -> None:
    context = {"amount": 12.5, "ok": True, "items": [1, 2]}
    assert render("{context.amount} {context.ok} {context.items}", context) == "12.5 True [1, 2]"


def test_nested_context_keys_are_read_through_mappings_only() -> None:
    assert render("{context.payee.name}", {"payee": {"name": "ACME"}}) == "ACME"
    assert render("{context.payee.name}", {"payee": "ACME"}) == "?"


@pytest.mark.parametrize("context", [{}, {"amount": None}])
def test_missing_or_null_values_render_as_a_question_mark(context: dict[str, Any]) -> None:
    assert render("Transfer {context.amount}", context) == "Transfer ?"


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{context.__class__}", "?"),
        ("{context.amount.__class__}", "?"),
        ("{action.__class__}", "{action.__class__}"),
        ("{context.__init__.__globals__}", "?"),
        ("{0}", "{0}"),
        ("{}", "{}"),
        ("{context.amount!r:>99999}", "{context.amount!r:>99999}"),
        ("{context.amount:>99999}", "{context.amount:>99999}"),
        ("{context[amount]}", "{context[amount]}"),
        ("{context.amount!s}", "{context.amount!s}"),
        ("{{context.amount}}", "{150}"),
        ("{ context.amount }", "{ context.amount }"),
        ("{subject.email}", "{subject.email}"),
        ("%(amount)s $amount {", "%(amount)s $amount {"),
    ],
)
def test_anything_but_a_plain_placeholder_renders_literally_or_as_missing(
    template: str, expected: str
) -> None:
    assert render(template) == expected


def test_values_are_not_expanded_again() -> None:
    """A value that looks like a placeholder is shown as written (one pass only)."""
    context = {"payee": "{context.secret}", "secret": "s3cr3t"}
    assert render("to {context.payee}", context) == "to {context.secret}"


def test_control_and_bidi_characters_in_values_are_neutralised() -> None:
    context = {"payee": "ACME\u202e\u200bLTD\nnext line\x1b[31m"}
    shown = render("to {context.payee}", context)
    assert "\u202e" not in shown
    assert "\u200b" not in shown
    assert "\n" not in shown
    assert "\x1b" not in shown
    assert shown == "to ACME\ufffd\ufffdLTD\ufffdnext line\ufffd[31m"


def test_long_values_and_long_summaries_are_capped() -> None:
    one = render("{context.payee}", {"payee": "x" * 1000})
    assert len(one) == MAX_VALUE_LENGTH
    assert one.endswith("\u2026")
    many = render("{context.a} {context.a} {context.a} {context.a}", {"a": "y" * 1000})
    assert len(many) == MAX_SUMMARY_LENGTH
    assert many.endswith("\u2026")


def test_without_a_template_the_default_lists_the_action_and_sorted_context() -> None:
    context = {"payee": "ACME", "amount": 100}
    assert render(None, context) == "payments.transfer (amount=100, payee=ACME)"
    assert render("", context) == "payments.transfer (amount=100, payee=ACME)"
    assert default_summary(action="account.view", context={}) == "account.view"


def test_the_default_summary_is_capped_and_neutralises_values() -> None:
    context = {f"k{i:03}": "v" * 50 for i in range(100)}
    shown = default_summary(action="a", context=context)
    assert len(shown) == MAX_SUMMARY_LENGTH
    assert shown.startswith("a (k000=")
    odd_keys: dict[Any, Any] = {"x": "1\u202e2", 3: None}
    assert default_summary(action="a", context=odd_keys) == "a (3=?, x=1\ufffd2)"


@pytest.mark.parametrize(
    "template",
    [
        "Transfer {context.amount} to {context.payee}",
        "{action}",
        "no placeholders",
        "{context.a.b-c}",
    ],
)
def test_check_template_accepts_plain_placeholders(template: str) -> None:
    assert check_template(template) is None


@pytest.mark.parametrize(
    "template", ["{0}", "{}", "{context}", "{context.a!r}", "{context.a:>9}", "{x.y}", " "]
)
def test_check_template_names_the_problem(template: str) -> None:
    problem = check_template(template)
    assert problem is not None


_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


@given(
    template=st.text(
        alphabet=st.sampled_from(list("{}.!:rs0 contextamount_actionx\u202e")), max_size=60
    ),
    context=st.dictionaries(
        st.sampled_from(["amount", "x", "__class__", "a"]), _values, max_size=4
    ),
    action=st.text(max_size=300),
)
def test_rendering_never_raises_and_stays_within_the_cap(
    template: str, context: dict[str, Any], action: str
) -> None:
    shown = render_summary(template, action=action, context=context)
    assert len(shown) <= MAX_SUMMARY_LENGTH
    assert len(render_summary(None, action=action, context=context)) <= MAX_SUMMARY_LENGTH
