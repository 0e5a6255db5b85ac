"""The transaction digest: what a step-up (and its grant) is bound to.

A digest commits to the subject, the session, the action, the optional resource and the
context (amount, payee...). It is SHA-256 over a domain-separation prefix and the RFC 8785
(JSON Canonicalization Scheme) form of those values, as 64 lowercase hex characters.

What counts as "the same transaction" follows RFC 8785:

- key order never matters, at any depth: ``{"amount": 10, "payee": "x"}`` equals
  ``{"payee": "x", "amount": 10}``;
- types matter: ``10``, ``"10"`` and ``true`` all differ, and so do ``null`` and a missing
  key; an extra or missing field changes the digest;
- numbers are compared as JSON numbers: ``10`` and ``10.0`` are the *same* number and give
  the same digest (RFC 8785 section 3.2.2.3 serializes both as ``10``). That is the spec's
  answer, and right for amounts sent by clients in different languages; send amounts as
  strings or integer minor units if ``10`` and ``10.0`` must differ;
- lists and tuples are both JSON arrays, and their order matters.

Values JSON cannot carry exactly are refused with ``InvalidRequestError`` rather than
silently coerced: non-string keys, NaN and infinities, integers beyond +/-(2**53 - 1) (a JSON
number is a double; beyond that, two different integers could share a digest), strings with
lone surrogates, other types (bytes, sets, datetimes, decimals), and nesting deeper than
:data:`MAX_DEPTH`. Send those as strings.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Mapping

import rfc8785

from stepguard.core.errors import InvalidRequestError

__all__ = ["DOMAIN", "MAX_DEPTH", "digests_match", "transaction_digest"]

DOMAIN = b"stepguard.txn.v1\x00"
MAX_DEPTH = 16  # nested objects/arrays, counting the context object itself
_INT_LIMIT = 2**53 - 1

_JsonValue = None | bool | int | float | str | list["_JsonValue"] | dict[str, "_JsonValue"]


def _refuse(path: str, problem: str) -> InvalidRequestError:
    return InvalidRequestError(
        f"transaction context {path}: {problem}; the context must be plain JSON "
        "(objects with string keys, arrays, strings, booleans, null, finite numbers, "
        f"integers within +/-(2**53 - 1), at most {MAX_DEPTH} levels deep)"
    )


def _text(value: str, path: str) -> str:
    if not _encodable(value):
        raise _refuse(path, "string is not valid Unicode (lone surrogate)")
    return value


def _encodable(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _plain(value: object, path: str, depth: int) -> _JsonValue:
    """A plain-JSON copy of ``value`` (dicts and lists), or ``InvalidRequestError``."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return _text(value, path)
    if isinstance(value, int):
        if not -_INT_LIMIT <= value <= _INT_LIMIT:
            raise _refuse(path, "integer out of the exact JSON range")
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _refuse(path, "NaN and infinities are not JSON numbers")
        return float(value)
    if depth >= MAX_DEPTH:
        raise _refuse(path, "nested too deeply")
    if isinstance(value, Mapping):
        result: dict[str, _JsonValue] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise _refuse(path, f"object key {key!r} is not a string")
            _text(key, path)
            result[key] = _plain(item, f"{path}.{key}", depth + 1)
        return result
    if isinstance(value, list | tuple):
        return [_plain(item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value)]
    raise _refuse(path, f"unsupported type {type(value).__name__}")


def transaction_digest(
    *,
    subject_id: str,
    session_id: str,
    action: str,
    resource: str | None,
    context: Mapping[str, object],
) -> str:
    """The SHA-256 hex digest that binds a challenge and its grant to one transaction.

    Raises ``InvalidRequestError`` for a context (or a string) JSON cannot carry exactly.
    """
    document = {
        "subject_id": subject_id,
        "session_id": session_id,
        "action": action,
        "resource": resource,
        "context": _plain(context, "$", 0),
    }
    try:
        canonical = rfc8785.dumps(document)
    except (rfc8785.CanonicalizationError, UnicodeError) as exc:  # a lone surrogate in a field
        raise InvalidRequestError(f"transaction cannot be canonicalized: {exc}") from None
    return hashlib.sha256(DOMAIN + canonical).hexdigest()


def digests_match(a: str, b: str) -> bool:
    """Whether two digests are equal, compared in constant time."""
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))
