"""Web Push through pywebpush: the payload is encrypted for the subscription (RFC 8291,
``aes128gcm``), the request carries a VAPID signature (RFC 8292), and it is posted to the
subscription's endpoint (RFC 8030) only when that endpoint is a configured push service."""

from __future__ import annotations

import base64
import ipaddress
import json
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from cryptography.hazmat.primitives import serialization
from py_vapid import Vapid02
from pywebpush import WebPushException, webpush_async

from stepguard.core.secret import Secret
from stepguard.service.ports import SendError
from stepguard.service.push_ports import WebPushMessage

__all__ = ["VapidWebPushSender"]


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class VapidWebPushSender:
    """A ``WebPushSender``. ``private_key`` is the VAPID key (PEM, or base64url DER / raw
    32-byte scalar, as ``py_vapid`` reads it); ``subject`` the VAPID contact
    (``mailto:`` or ``https:``). ``endpoint_hosts``: push services a subscription may name
    (a host or a parent domain); HTTPS only, except a loopback host listed here (tests)."""

    def __init__(
        self,
        *,
        private_key: Secret[str],
        subject: str,
        endpoint_hosts: Sequence[str],
        timeout_seconds: float = 5.0,
    ) -> None:
        raw = private_key.reveal()
        try:
            self._vapid = (
                Vapid02.from_pem(raw.encode("ascii"))
                if raw.lstrip().startswith("-----")
                else Vapid02.from_string(raw)
            )
        except Exception as error:
            raise ValueError(
                f"the VAPID private key is unreadable ({type(error).__name__})"
            ) from None
        if not subject.startswith(("mailto:", "https://")):
            raise ValueError("the VAPID subject must be a mailto: or https: URL")
        self._subject = subject
        self._hosts = tuple(h.lower().strip(".") for h in endpoint_hosts if h)
        self._timeout = timeout_seconds
        point = self._vapid.public_key.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        self._public = base64.urlsafe_b64encode(point).rstrip(b"=").decode("ascii")

    @property
    def public_key(self) -> str:
        return self._public

    def accepts(self, endpoint: str) -> bool:
        try:
            parts = urlsplit(endpoint)
            host = (parts.hostname or "").lower()
            _ = parts.port
        except ValueError:
            return False
        if not host or parts.username or parts.password:
            return False
        listed = any(host == h or host.endswith("." + h) for h in self._hosts)
        if not listed:
            return False
        if parts.scheme == "https":
            return True
        return parts.scheme == "http" and _is_loopback(host)

    async def send(self, message: WebPushMessage) -> None:
        subscription: dict[str, Any] = json.loads(message.subscription.reveal())
        if not self.accepts(str(subscription.get("endpoint", ""))):
            raise SendError("endpoint not allowed")
        try:
            await webpush_async(
                subscription_info=subscription,
                data=message.data,
                vapid_private_key=self._vapid,
                vapid_claims={"sub": self._subject},
                ttl=message.ttl_seconds,
                timeout=self._timeout,
                headers={"Urgency": "high"},
            )
        except WebPushException as error:
            status = error.status_code
            raise SendError(f"http {status}" if status else "push service error") from None
        except (aiohttp.ClientError, OSError):
            raise SendError("connection failed") from None
