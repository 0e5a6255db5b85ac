"""The transaction digest: RFC 8785 canonical, domain-separated, strict about types."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from types import MappingProxyType
from typing import Any

import pytest
import rfc8785
from hypothesis import assume, given
from hypothesis import strategies as st

from stepguard.core.binding import DOMAIN, MAX_DEPTH, digests_match, transaction_digest
from stepguard.core.errors import InvalidRequestError

BASE: dict[str, Any] = {
    "subject_id": "usr_1",
    "session_id": "ses_1",
    "action": "payments.transfer",
    "resource": "acct:42",
}


def digest(context: Mapping[str, object], **overrides: Any) -> str:
    fields = {**BASE, **overrides}
    return transaction_digest(context=context, **fields)


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
contexts = st.dictionaries(st.text(), json_values, max_size=6)


def shuffled(value: object, rng: random.Random) -> object:
    """The same JSON value with every object's keys in another insertion order."""
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        return {k: shuffled(v, rng) for k, v in items}
    if isinstance(value, list):
        return [shuffled(v, rng) for v in value]
    return value


# --- what makes two transactions the same -------------------------------------------------------


def test_digest_is_64_lowercase_hex_and_deterministic() -> None:
    first = digest({"amount": 10, "payee": "x"})
    assert len(first) == 64
    assert all(c in "0123456789abcdef" for c in first)
    assert digest({"amount": 10, "payee": "x"}) == first


def test_digest_is_pinned_for_a_known_transaction() -> None:
    """Changing the format by accident would orphan every open challenge and grant."""
    document = {**BASE, "context": {"amount": 10, "payee": "x"}}
    expected = hashlib.sha256(b"stepguard.txn.v1\x00" + rfc8785.dumps(document)).hexdigest()

    assert digest({"payee": "x", "amount": 10}) == expected
    assert expected == "eddd7bcb55bb47e523747ae7dfc250e9dc6bf7244ae57836ae46cde16c80b9f2"


def test_digest_is_domain_separated() -> None:
    document = {**BASE, "context": {}}
    assert DOMAIN == b"stepguard.txn.v1\x00"
    assert digest({}) != hashlib.sha256(rfc8785.dumps(document)).hexdigest()


def test_key_order_does_not_matter() -> None:
    assert digest({"amount": 10, "payee": "x"}) == digest({"payee": "x", "amount": 10})


def test_nested_key_order_does_not_matter() -> None:
    a = {"payee": {"iban": "DE00", "name": "X"}, "lines": [{"a": 1, "b": 2}]}
    b = {"lines": [{"b": 2, "a": 1}], "payee": {"name": "X", "iban": "DE00"}}
    assert digest(a) == digest(b)


@given(context=contexts, seed=st.integers())
def test_digest_is_invariant_under_key_reordering_at_every_depth(
    context: dict[str, Any], seed: int
) -> None:
    reordered = shuffled(context, random.Random(seed))
    assert isinstance(reordered, dict)
    assert digest(reordered) == digest(context)


def test_numbers_compare_as_json_numbers_so_ten_equals_ten_point_zero() -> None:
    """RFC 8785 serializes 10 and 10.0 alike; send strings if they must differ."""
    assert digest({"amount": 10}) == digest({"amount": 10.0})
    assert digest({"amount": 10}) != digest({"amount": 10.5})


def test_lists_and_tuples_are_the_same_json_array_and_order_matters() -> None:
    assert digest({"to": ["a", "b"]}) == digest({"to": ("a", "b")})
    assert digest({"to": ["a", "b"]}) != digest({"to": ["b", "a"]})


def test_any_mapping_digests_like_a_dict() -> None:
    context = {"amount": 10, "meta": MappingProxyType({"k": "v"})}
    assert digest(MappingProxyType(context)) == digest({"amount": 10, "meta": {"k": "v"}})


@pytest.mark.parametrize(
    ("a", "b"),
    [
        pytest.param({"amount": 10}, {"amount": "10"}, id="number-vs-string"),
        pytest.param({"flag": True}, {"flag": 1}, id="true-vs-one"),
        pytest.param({"flag": False}, {"flag": 0}, id="false-vs-zero"),
        pytest.param({"memo": None}, {}, id="null-vs-missing"),
        pytest.param({"memo": None}, {"memo": ""}, id="null-vs-empty-string"),
        pytest.param({"to": ["a"]}, {"to": "a"}, id="list-vs-scalar"),
        pytest.param({"to": {}}, {"to": []}, id="object-vs-array"),
        pytest.param({"amount": 10}, {"amount": 10, "extra": 1}, id="extra-field"),
        pytest.param({"amount": 10}, {"Amount": 10}, id="key-case"),
        pytest.param({"n": 2**53 - 1}, {"n": 2**53 - 2}, id="largest-exact-integers"),
    ],
)
def test_type_changes_and_extra_fields_change_the_digest(
    a: dict[str, object], b: dict[str, object]
) -> None:
    assert digest(a) != digest(b)


@pytest.mark.parametrize(
    "overrides",
    [
        {"subject_id": "usr_2"},
        {"session_id": "ses_2"},
        {"action": "payments.refund"},
        {"resource": None},
        {"resource": ""},
        {"resource": "acct:43"},
        {"subject_id": "ses_1", "session_id": "usr_1"},
    ],
    ids=lambda o: ",".join(f"{k}={v!r}" for k, v in o.items()),
)
def test_every_binding_field_changes_the_digest(overrides: dict[str, Any]) -> None:
    assert digest({"amount": 10}, **overrides) != digest({"amount": 10})


@given(
    field=st.sampled_from(["subject_id", "session_id", "action", "resource"]),
    value=st.text(),
    context=contexts,
)
def test_any_different_field_value_gives_a_different_digest(
    field: str, value: str, context: dict[str, Any]
) -> None:
    changed = digest(context, **{field: value})
    assert (changed == digest(context)) == (value == BASE[field])


@given(context=contexts, key=st.text(), value=json_values)
def test_adding_a_field_always_changes_the_digest(
    context: dict[str, Any], key: str, value: object
) -> None:
    assume(key not in context)  # replacing a value is covered by the type-change tests
    extended = {**context, key: value}
    assert digest(extended) != digest(context)


def test_the_largest_exact_integers_are_accepted() -> None:
    digest({"n": 2**53 - 1, "m": -(2**53) + 1})


# --- what cannot be bound ----------------------------------------------------------------------


class Unserializable:
    pass


def _cycle() -> dict[str, object]:
    loop: dict[str, object] = {}
    loop["self"] = loop
    return loop


def _nested(depth: int) -> dict[str, object]:
    """An object nested ``depth`` times: ``depth + 1`` levels counting the outermost."""
    value: dict[str, object] = {}
    for _ in range(depth):
        value = {"x": value}
    return value


@pytest.mark.parametrize(
    ("context", "message"),
    [
        pytest.param({"amount": float("nan")}, "NaN", id="nan"),
        pytest.param({"amount": float("inf")}, "NaN and infinities", id="infinity"),
        pytest.param({"amount": float("-inf")}, "NaN and infinities", id="minus-infinity"),
        pytest.param({"n": 2**53}, "exact JSON range", id="int-above-2-53"),
        pytest.param({"n": -(2**53)}, "exact JSON range", id="int-below-minus-2-53"),
        pytest.param({"n": 10**400}, "exact JSON range", id="huge-int"),
        pytest.param({"m": {1: "a"}}, "not a string", id="int-key"),
        pytest.param({"m": {None: "a"}}, "not a string", id="none-key"),
        pytest.param({"b": b"bytes"}, "bytes", id="bytes"),
        pytest.param({"s": {"a"}}, "set", id="set"),
        pytest.param({"t": datetime(2025, 1, 1, tzinfo=UTC)}, "datetime", id="datetime"),
        pytest.param({"d": Decimal("10.00")}, "Decimal", id="decimal"),
        pytest.param({"o": Unserializable()}, "Unserializable", id="object"),
        pytest.param({"s": "\ud800"}, "lone surrogate", id="lone-surrogate"),
        pytest.param({"\udfff": 1}, "lone surrogate", id="lone-surrogate-key"),
        pytest.param(_cycle(), "too deeply", id="cycle"),
        pytest.param(_nested(MAX_DEPTH), "too deeply", id="too-deep"),
    ],
)
def test_values_json_cannot_carry_exactly_are_refused(
    context: dict[Any, object], message: str
) -> None:
    with pytest.raises(InvalidRequestError, match=message) as excinfo:
        digest(context)
    assert excinfo.value.code == "invalid_request"


def test_the_refusal_names_where_the_bad_value_is() -> None:
    with pytest.raises(InvalidRequestError, match=r"\$\.lines\[1\]\.amount"):
        digest({"lines": [{"amount": 1}, {"amount": float("nan")}]})


def test_nesting_up_to_the_limit_is_accepted() -> None:
    """MAX_DEPTH counts the context object itself: _nested(n) is n + 1 objects deep."""
    digest(_nested(MAX_DEPTH - 1))
    digest({"x": [[[["deep"]]]]})


def test_a_lone_surrogate_in_a_binding_field_is_refused() -> None:
    with pytest.raises(InvalidRequestError, match="canonicalized"):
        digest({}, action="pay\ud800")


# --- comparison ---------------------------------------------------------------------------------


def test_digests_match_compares_equal_digests() -> None:
    a = digest({"amount": 10})
    assert digests_match(a, digest({"amount": 10.0}))


@pytest.mark.parametrize(
    "other",
    [
        pytest.param("0" * 64, id="different"),
        pytest.param("", id="empty"),
        pytest.param("0" * 63, id="shorter"),
        pytest.param("é" * 64, id="non-ascii"),
    ],
)
def test_digests_match_rejects_anything_else_without_raising(other: str) -> None:
    assert not digests_match(digest({"amount": 10}), other)
