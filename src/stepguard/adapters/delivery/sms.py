"""SMS through a provider's HTTP API, on httpx: a Twilio-compatible Messages API, or a
generic JSON webhook.

Both use short timeouts and retry at most once, only where the request cannot have been
acted on or the provider said it failed: a connection error (nothing was sent) or a 5xx
answer. A 4xx answer is never retried (the request itself is wrong), and neither is a read
timeout (the provider may have sent the message; a retry could send it twice). Errors carry
the status code only, never the provider's body, the message or a credential.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import httpx

from stepguard.adapters.delivery.render import Renderer
from stepguard.core.errors import ConfigurationError
from stepguard.core.secret import Secret
from stepguard.service.ports import CodeMessage, NoticeMessage, SendError

__all__ = ["TwilioSmsSender", "WebhookSmsSender", "parse_body_template"]

DEFAULT_BODY_TEMPLATE = '{"to": "{to}", "body": "{body}"}'
_PLACEHOLDER = re.compile(r"\{(to|body)\}")


async def _post_with_one_retry(
    *,
    url: str,
    limits: httpx.Timeout,
    transport: httpx.AsyncBaseTransport | None,
    auth: httpx.Auth | None = None,
    **request: Any,
) -> None:
    async with httpx.AsyncClient(
        timeout=limits, follow_redirects=False, auth=auth, transport=transport
    ) as client:
        for attempt in (1, 2):
            try:
                response = await client.post(url, **request)
            except (httpx.ConnectError, httpx.ConnectTimeout):
                if attempt == 2:
                    raise SendError("sms provider unreachable") from None
                continue
            except httpx.TimeoutException:
                raise SendError("sms provider timeout") from None
            except httpx.HTTPError as error:
                raise SendError(f"sms provider error ({type(error).__name__})") from None
            if response.is_success:
                return
            if response.status_code >= 500 and attempt == 1:
                continue
            raise SendError(f"sms provider http {response.status_code}")


def _timeout(seconds: float) -> httpx.Timeout:
    return httpx.Timeout(seconds, connect=min(seconds, 3.0))


class TwilioSmsSender:
    """``POST {base}/2010-04-01/Accounts/{sid}/Messages.json``, form-encoded ``To``,
    ``From`` or ``MessagingServiceSid``, ``Body``; HTTP basic auth (account SID, token)."""

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: Secret[str],
        from_number: str | None = None,
        messaging_service_sid: str | None = None,
        base_url: str = "https://api.twilio.com",
        timeout_seconds: float = 5.0,
        renderer: Renderer | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if (from_number is None) == (messaging_service_sid is None):
            raise ConfigurationError(
                "the Twilio SMS sender needs exactly one of a From number or a MessagingServiceSid"
            )
        if not re.fullmatch(r"[A-Za-z0-9]{1,64}", account_sid):
            raise ConfigurationError("the Twilio account SID must be letters and digits")
        self._sid = account_sid
        self._token = auth_token
        self._sender: tuple[str, str] = (
            ("From", from_number)
            if from_number
            else ("MessagingServiceSid", messaging_service_sid or "")
        )
        self._url = f"{base_url.rstrip('/')}/2010-04-01/Accounts/{account_sid}/Messages.json"
        self._timeout = _timeout(timeout_seconds)
        self._renderer = renderer or Renderer()
        self._transport = transport  # None: httpx's own (tests wrap it to count attempts)

    def __repr__(self) -> str:
        return f"TwilioSmsSender(url={self._url!r})"

    async def send_code(self, message: CodeMessage) -> None:
        await self._send(message.to, self._renderer.code_sms(message))

    async def send_notice(self, message: NoticeMessage) -> None:
        await self._send(message.to, self._renderer.notice_sms(message))

    async def _send(self, to: str, body: str) -> None:
        form = {"To": to, self._sender[0]: self._sender[1], "Body": body}
        await _post_with_one_retry(
            url=self._url,
            limits=self._timeout,
            transport=self._transport,
            auth=httpx.BasicAuth(self._sid, self._token.reveal()),
            data=form,
        )


def parse_body_template(template: str) -> Any:
    """Parse a webhook body template (JSON whose strings may hold ``{to}`` and ``{body}``)."""
    try:
        parsed = json.loads(template)
    except ValueError:
        raise ConfigurationError("the SMS webhook body template is not valid JSON") from None
    if not isinstance(parsed, dict):
        raise ConfigurationError("the SMS webhook body template must be a JSON object")
    if "{to}" not in template or "{body}" not in template:
        raise ConfigurationError("the SMS webhook body template needs {to} and {body}")
    return parsed


def _fill(node: Any, values: Mapping[str, str]) -> Any:
    """Substitute placeholders inside the *parsed* template's strings, in one pass, so a
    value can neither change the JSON structure nor introduce another placeholder."""
    if isinstance(node, str):
        return _PLACEHOLDER.sub(lambda match: values[match.group(1)], node)
    if isinstance(node, list):
        return [_fill(item, values) for item in node]
    if isinstance(node, dict):
        return {key: _fill(value, values) for key, value in node.items()}
    return node


class WebhookSmsSender:
    """``POST url`` with a JSON body from a template and an optional auth header."""

    def __init__(
        self,
        *,
        url: str,
        body_template: str = DEFAULT_BODY_TEMPLATE,
        auth_header: str = "Authorization",
        auth_value: Secret[str] | None = None,
        timeout_seconds: float = 5.0,
        renderer: Renderer | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not url.startswith(("https://", "http://")):
            raise ConfigurationError("the SMS webhook URL must be http(s)")
        self._url = url
        self._template = parse_body_template(body_template)
        self._auth_header = auth_header
        self._auth_value = auth_value
        self._timeout = _timeout(timeout_seconds)
        self._renderer = renderer or Renderer()
        self._transport = transport  # None: httpx's own (tests wrap it to count attempts)

    def __repr__(self) -> str:
        return "WebhookSmsSender()"  # the URL may carry a token

    async def send_code(self, message: CodeMessage) -> None:
        await self._send(message.to, self._renderer.code_sms(message))

    async def send_notice(self, message: NoticeMessage) -> None:
        await self._send(message.to, self._renderer.notice_sms(message))

    async def _send(self, to: str, body: str) -> None:
        headers = {}
        if self._auth_value is not None:
            headers[self._auth_header] = self._auth_value.reveal()
        await _post_with_one_retry(
            url=self._url,
            limits=self._timeout,
            transport=self._transport,
            json=_fill(self._template, {"to": to, "body": body}),
            headers=headers,
        )
