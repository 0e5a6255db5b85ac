"""The caller's side of RFC 9470, for httpx: answer a step-up challenge and retry once.

::

    def stronger_token(challenge: StepUpChallenge) -> str | None:
        return my_idp.authorize(acr_values=challenge.acr_values, max_age=challenge.max_age)

    auth = StepUpAuth(token, on_step_up=stronger_token)
    with httpx.Client(auth=auth) as http:
        http.post("https://api.example/transfer", json=...)
        # InsufficientUserAuthenticationError when no stronger token could be had
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator

import httpx

from stepguard.sdk._models import Secret
from stepguard.sdk.errors import InsufficientUserAuthenticationError
from stepguard.sdk.rfc9470 import StepUpChallenge, parse_www_authenticate

__all__ = ["StepUpAuth"]

TokenCallback = Callable[[StepUpChallenge], str | Secret | None]
AsyncTokenCallback = Callable[
    [StepUpChallenge], Awaitable[str | Secret | None] | str | Secret | None
]


def _challenge(response: httpx.Response) -> StepUpChallenge | None:
    if response.status_code != 401:
        return None
    values = response.headers.get_list("www-authenticate")
    return parse_www_authenticate(", ".join(values)) if values else None


def _reveal(token: str | Secret) -> str:
    return token.reveal() if isinstance(token, Secret) else token


class StepUpAuth(httpx.Auth):
    """Sends ``Authorization: Bearer <token>``; on ``401`` with an RFC 9470
    ``insufficient_user_authentication`` challenge, calls ``on_step_up(challenge)`` for a
    stronger token and retries the request once with it (the token is kept for later
    requests). When the callback gives nothing, or the retry is challenged again, raises
    :class:`~stepguard.sdk.InsufficientUserAuthenticationError` carrying the challenge.

    With an ``httpx.AsyncClient``, ``on_step_up`` may be a coroutine function. Other 401s and
    every other response are returned as they are.
    """

    requires_request_body = True  # the retry re-sends the same body

    def __init__(
        self,
        token: str | Secret | None,
        *,
        on_step_up: TokenCallback | AsyncTokenCallback | None = None,
    ) -> None:
        self._token = None if token is None else Secret(_reveal(token))
        self._on_step_up = on_step_up
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return "StepUpAuth(token=Secret('**********'))"

    @property
    def token(self) -> Secret | None:
        return self._token

    def _authorize(self, request: httpx.Request) -> None:
        if self._token is not None:
            request.headers["Authorization"] = f"Bearer {self._token.reveal()}"

    def _adopt(self, challenge: StepUpChallenge, token: object) -> None:
        if token is None or token == "":
            raise InsufficientUserAuthenticationError(challenge)
        if not isinstance(token, str | Secret):
            raise TypeError("on_step_up must return a str, a Secret or None")
        with self._lock:
            self._token = Secret(_reveal(token))

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        self._authorize(request)
        response = yield request
        challenge = _challenge(response)
        if challenge is None:
            return
        if self._on_step_up is None:
            raise InsufficientUserAuthenticationError(challenge)
        token = self._on_step_up(challenge)
        if inspect.isawaitable(token):
            raise TypeError("an async on_step_up needs an httpx.AsyncClient")
        self._adopt(challenge, token)
        self._authorize(request)
        retried = yield request
        again = _challenge(retried)
        if again is not None:
            raise InsufficientUserAuthenticationError(again)

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        self._authorize(request)
        response = yield request
        challenge = _challenge(response)
        if challenge is None:
            return
        if self._on_step_up is None:
            raise InsufficientUserAuthenticationError(challenge)
        token = self._on_step_up(challenge)
        if inspect.isawaitable(token):
            token = await token
        self._adopt(challenge, token)
        self._authorize(request)
        retried = yield request
        again = _challenge(retried)
        if again is not None:
            raise InsufficientUserAuthenticationError(again)
