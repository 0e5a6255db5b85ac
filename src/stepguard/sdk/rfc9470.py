"""RFC 9470, OAuth 2.0 Step Up Authentication Challenge Protocol: the ``WWW-Authenticate``
challenge a resource server sends when the caller's authentication is too weak or too old.

::

    WWW-Authenticate: Bearer error="insufficient_user_authentication",
      error_description="A different authentication level is required",
      acr_values="aal2", max_age=300

:func:`format_www_authenticate` writes that header (the server uses it);
:func:`parse_www_authenticate` reads it back from any ``WWW-Authenticate`` value, following
the RFC 9110 section 11 grammar (several challenges per field, tokens and quoted strings,
case-insensitive scheme and parameter names).

Stdlib only, and no HTTP client: the server imports this module.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from stepguard.sdk._models import Decision

__all__ = [
    "INSUFFICIENT_USER_AUTHENTICATION",
    "StepUpChallenge",
    "format_www_authenticate",
    "parse_www_authenticate",
    "step_up_challenge_from_decision",
]

INSUFFICIENT_USER_AUTHENTICATION: Final = "insufficient_user_authentication"

_DEFAULT_DESCRIPTION: Final = "A different authentication level is required"

# An acr value is one space-free word inside acr_values (RFC 6749 NQCHAR).
_ACR_VALUE: Final = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
# Control characters are never allowed in a description; they could split or forge headers.
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")
_VISIBLE_ASCII: Final = re.compile(r"[\x20-\x7e]*")

# RFC 9110 section 5.6.2: token = 1*tchar.
_TOKEN: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# RFC 9110 section 11.2: token68 = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
_TOKEN68: Final = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_DIGITS: Final = re.compile(r"[0-9]+")


@dataclass(frozen=True, slots=True, kw_only=True)
class StepUpChallenge:
    """An RFC 9470 ``insufficient_user_authentication`` challenge.

    ``acr_values``: acceptable authentication context classes, most preferred first (empty:
    not stated). ``max_age``: the largest acceptable age of the last authentication, in
    seconds (``None``: not stated). ``error_description``: text for the developer, not the
    end user.
    """

    acr_values: tuple[str, ...] = ()
    max_age: int | None = None
    error_description: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.acr_values, tuple):
            raise TypeError("acr_values must be a tuple of str")
        for value in self.acr_values:
            if not _is_acr_value(value):
                raise ValueError(
                    "each acr value must be a non-empty string of visible ASCII characters "
                    "without spaces, quotes or backslashes"
                )
        if self.max_age is not None and not _is_seconds(self.max_age):
            raise ValueError("max_age must be a non-negative int or None")
        if not isinstance(self.error_description, str):
            raise TypeError("error_description must be a str")
        if _CONTROL.search(self.error_description):
            raise ValueError("error_description must not contain control characters")


def _is_acr_value(value: object) -> bool:
    return isinstance(value, str) and _ACR_VALUE.fullmatch(value) is not None


def _is_seconds(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _quoted(value: str) -> str:
    """An RFC 9110 quoted-string: backslash-escape the quote and the backslash."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def format_www_authenticate(challenge: StepUpChallenge) -> str:
    """The ``WWW-Authenticate`` value for ``challenge``, parameters in a fixed order.

    ``error_description`` must be printable ASCII (header values are ASCII in practice);
    otherwise :class:`ValueError`. Empty ``acr_values`` and ``error_description`` and a
    ``None`` ``max_age`` are left out.
    """
    if not _VISIBLE_ASCII.fullmatch(challenge.error_description):
        raise ValueError("error_description must contain printable ASCII characters only")
    params = [f"error={_quoted(INSUFFICIENT_USER_AUTHENTICATION)}"]
    if challenge.error_description:
        params.append(f"error_description={_quoted(challenge.error_description)}")
    if challenge.acr_values:
        params.append(f"acr_values={_quoted(' '.join(challenge.acr_values))}")
    if challenge.max_age is not None:
        params.append(f"max_age={challenge.max_age}")
    return "Bearer " + ", ".join(params)


class _MalformedError(Exception):
    """The header does not follow the RFC 9110 challenge grammar."""


@dataclass(slots=True)
class _Challenge:
    scheme: str  # lower-cased
    params: dict[str, str]  # lower-cased names
    token68: str | None = None


class _ChallengeParser:
    """RFC 9110 section 11.6.1: ``WWW-Authenticate = #challenge``, where
    ``challenge = auth-scheme [ 1*SP ( token68 / #auth-param ) ]``. A comma separates both
    challenges and parameters: an element is a parameter when its token is followed by ``=``.
    """

    def __init__(self, text: str) -> None:
        self._text = text
        self._pos = 0

    def parse(self) -> list[_Challenge]:
        challenges: list[_Challenge] = []
        current: _Challenge | None = None
        while True:
            self._skip_separators()
            if self._at_end():
                return challenges
            token = self._token()
            after_token = self._pos
            self._ows()
            if self._peek() == "=":
                # A parameter of the current challenge.
                if current is None or current.token68 is not None:
                    raise _MalformedError
                self._pos += 1
                self._add_param(current, token)
            else:
                self._pos = after_token
                current = _Challenge(scheme=token.lower(), params={})
                challenges.append(current)
                self._challenge_start(current)
            self._end_of_element()

    def _challenge_start(self, challenge: _Challenge) -> None:
        """After the scheme: nothing, a token68, or the first parameter."""
        had_space = self._ows()
        if self._at_end() or self._peek() == ",":
            return
        if not had_space:
            raise _MalformedError  # the scheme and what follows it are separated by 1*SP
        match = _TOKEN68.match(self._text, self._pos)
        if match:
            after = self._skip_ows_from(match.end())
            if after == len(self._text) or self._text[after] == ",":
                # "abc", "abc==", and "name=" (a parameter would need a value) end here.
                challenge.token68 = match.group()
                self._pos = match.end()
                return
        name = self._token()
        self._ows()
        if self._peek() != "=":
            raise _MalformedError
        self._pos += 1
        self._add_param(challenge, name)

    def _add_param(self, challenge: _Challenge, name: str) -> None:
        self._ows()
        value = self._quoted_string() if self._peek() == '"' else self._token()
        key = name.lower()
        if key in challenge.params:
            raise _MalformedError  # RFC 9110: each parameter name occurs only once per challenge
        challenge.params[key] = value

    def _end_of_element(self) -> None:
        self._ows()
        if not self._at_end() and self._peek() != ",":
            raise _MalformedError

    def _skip_separators(self) -> None:
        while True:
            self._ows()
            if self._peek() != ",":
                return
            self._pos += 1

    def _token(self) -> str:
        match = _TOKEN.match(self._text, self._pos)
        if not match:
            raise _MalformedError
        self._pos = match.end()
        return match.group()

    def _quoted_string(self) -> str:
        """RFC 9110 section 5.6.4, with quoted-pair unescaping."""
        text = self._text
        pos = self._pos + 1
        chars: list[str] = []
        while pos < len(text):
            ch = text[pos]
            if ch == '"':
                self._pos = pos + 1
                return "".join(chars)
            if ch == "\\":
                pos += 1
                if pos >= len(text) or not _is_quoted_pair_char(text[pos]):
                    raise _MalformedError
                chars.append(text[pos])
            elif _is_qdtext(ch):
                chars.append(ch)
            else:
                raise _MalformedError
            pos += 1
        raise _MalformedError  # unterminated

    def _skip_ows_from(self, pos: int) -> int:
        while pos < len(self._text) and self._text[pos] in " \t":
            pos += 1
        return pos

    def _ows(self) -> bool:
        """Skip optional whitespace; say whether there was any."""
        start = self._pos
        self._pos = self._skip_ows_from(start)
        return self._pos > start

    def _peek(self) -> str:
        return self._text[self._pos] if self._pos < len(self._text) else ""

    def _at_end(self) -> bool:
        return self._pos >= len(self._text)


def _is_qdtext(ch: str) -> bool:
    # HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text
    return ch in "\t " or ch == "!" or "#" <= ch <= "[" or "]" <= ch <= "~" or ch >= "\x80"


def _is_quoted_pair_char(ch: str) -> bool:
    # HTAB / SP / VCHAR / obs-text
    return ch in "\t " or "!" <= ch <= "~" or ch >= "\x80"


def _step_up_from(challenge: _Challenge) -> StepUpChallenge | None:
    params = challenge.params
    if challenge.scheme != "bearer" or params.get("error") != INSUFFICIENT_USER_AUTHENTICATION:
        return None
    max_age: int | None = None
    if "max_age" in params:
        if not _DIGITS.fullmatch(params["max_age"]):
            return None
        max_age = int(params["max_age"])
    try:
        return StepUpChallenge(
            acr_values=tuple(params.get("acr_values", "").split()),
            max_age=max_age,
            error_description=params.get("error_description", ""),
        )
    except ValueError:
        return None


def parse_www_authenticate(header: str) -> StepUpChallenge | None:
    """The first ``Bearer`` challenge with ``error="insufficient_user_authentication"`` in a
    ``WWW-Authenticate`` value, or ``None`` when there is none.

    Other schemes and other Bearer errors are skipped. A value that breaks the RFC 9110
    grammar (or repeats a parameter within a challenge) gives ``None`` as a whole: a
    malformed header is not a challenge to act on. Join several ``WWW-Authenticate`` field
    lines with ``", "`` before parsing.
    """
    try:
        challenges = _ChallengeParser(header).parse()
    except _MalformedError:
        return None
    for challenge in challenges:
        step_up = _step_up_from(challenge)
        if step_up is not None:
            return step_up
    return None


def step_up_challenge_from_decision(
    decision: Decision, *, error_description: str | None = None
) -> StepUpChallenge | None:
    """The RFC 9470 challenge for a ``step_up`` decision; ``None`` for ``allow`` and ``deny``.

    Uses the server's ready-made ``www_authenticate`` when it parses, else the decision's
    requirement. ``error_description`` replaces the description either way.
    """
    if not decision.step_up_required or decision.requirement is None:
        return None
    challenge = None
    if decision.www_authenticate is not None:
        challenge = parse_www_authenticate(decision.www_authenticate)
    if challenge is None:
        challenge = StepUpChallenge(
            acr_values=(decision.requirement.acr,),
            max_age=decision.requirement.max_age,
            error_description=_DEFAULT_DESCRIPTION,
        )
    if error_description is not None:
        challenge = StepUpChallenge(
            acr_values=challenge.acr_values,
            max_age=challenge.max_age,
            error_description=error_description,
        )
    return challenge
