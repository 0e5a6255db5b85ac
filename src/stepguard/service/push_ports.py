"""Ports of push approval: its storage, the Web Push sender, and what describes a request's
origin (the risk engine's geo and user-agent sources)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from stepguard.core.model import PushDevice, PushRequest
from stepguard.core.secret import Secret


class PushRepository(Protocol):
    """Approver devices, push requests and push pauses.

    ``answer``, ``complete_pairing`` and ``mark_finished`` are conditional writes: at most one
    concurrent caller gets ``True``."""

    async def lock_subject(self, subject_id: str) -> None:
        """Serialize push starts of one subject until the transaction ends (across
        processes), so the caps are checked and the new push stored as one step."""
        ...

    async def add_device(self, device: PushDevice) -> None: ...
    async def get_device(self, factor_id: str) -> PushDevice | None: ...
    async def find_by_pairing(self, pairing_hash: str) -> PushDevice | None: ...
    async def find_by_device_token(self, token_hash: str) -> PushDevice | None: ...
    async def list_devices(self, subject_id: str) -> list[PushDevice]: ...

    async def complete_pairing(
        self,
        factor_id: str,
        *,
        pairing_hash: str,
        public_key: bytes,
        device_token_hash: str,
        user_agent: str,
        at: datetime,
    ) -> bool:
        """Unpaired, this pairing token, unexpired at ``at`` -> paired (the token is dropped)."""
        ...

    async def set_subscription(self, factor_id: str, subscription: Secret[str] | None) -> None: ...

    async def add_request(self, request: PushRequest) -> None: ...
    async def get_request(self, push_id: str) -> PushRequest | None: ...

    async def pending_requests(self, subject_id: str, *, at: datetime) -> list[PushRequest]:
        """The subject's pending, unexpired requests, oldest first."""
        ...

    async def count_requests(self, subject_id: str, *, since: datetime) -> int: ...

    async def count_unanswered_or_denied(
        self, subject_id: str, *, since: datetime, at: datetime
    ) -> int:
        """Requests created at or after ``since`` that were denied, answered with a wrong
        number, or left pending until they expired (before ``at``)."""
        ...

    async def supersede(self, challenge_id: str, *, at: datetime) -> int:
        """Close the challenge's pending requests (a newer push replaces them)."""
        ...

    async def answer(self, push_id: str, *, status: str, factor_id: str, at: datetime) -> bool:
        """Pending and unexpired at ``at`` -> ``status``. ``True`` only for the call that did."""
        ...

    async def mark_finished(self, push_id: str, *, at: datetime) -> bool:
        """Approved and not finished -> finished (the requesting browser moved on, once)."""
        ...

    async def get_block(self, subject_id: str) -> datetime | None:
        """Until when push is paused for the subject (possibly in the past), if ever."""
        ...

    async def set_block(self, subject_id: str, *, until: datetime, at: datetime) -> None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class WebPushMessage:
    """A Web Push to one subscription. ``data`` is the JSON the service worker receives."""

    subscription: Secret[str]
    data: str
    ttl_seconds: int


class WebPushSender(Protocol):
    """Encrypts (RFC 8291) and posts (RFC 8030, VAPID RFC 8292) a push message. Raises
    ``SendError``; any other exception is also a failed send."""

    @property
    def public_key(self) -> str:
        """The VAPID public key (uncompressed point, base64url) for ``pushManager.subscribe``."""
        ...

    def accepts(self, endpoint: str) -> bool:
        """Whether a subscription's endpoint may be posted to (a known push service; the
        server never posts to an address a device made up)."""
        ...

    async def send(self, message: WebPushMessage) -> None: ...


class OriginDescriber(Protocol):
    """Where a request came from, in words for the approver: ``("Berlin, DE", "Chrome on
    Linux")``. Never raises (unknown parts are empty strings)."""

    def describe(self, *, ip: str | None, user_agent: str | None) -> tuple[str, str]: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class PushConfig:
    """Push approval's timings and push-bombing limits (docs/push.md).

    - at most ``max_outstanding`` pending pushes per subject, and ``max_per_window`` pushes
      in any ``window``;
    - ``pause_after`` pushes denied, answered with a wrong number or left unanswered within
      ``window`` pause push for the subject for ``pause`` (and the subject is told).
    """

    public_url: str = "http://127.0.0.1:8000"
    request_ttl: timedelta = timedelta(minutes=2)
    pairing_ttl: timedelta = timedelta(minutes=10)
    choices: int = 3
    max_outstanding: int = 2
    max_per_window: int = 10
    window: timedelta = timedelta(minutes=15)
    pause_after: int = 3
    pause: timedelta = timedelta(minutes=30)
    send_timeout_seconds: float = 10.0

    def __post_init__(self) -> None:
        if not 2 <= self.choices <= 9:
            raise ValueError("push number choices: 2 to 9")
        if min(self.max_outstanding, self.max_per_window, self.pause_after) < 1:
            raise ValueError("push limits must be at least 1")


class _NoOrigin:
    def describe(self, *, ip: str | None, user_agent: str | None) -> tuple[str, str]:
        return "", ""


@dataclass(frozen=True, slots=True, kw_only=True)
class PushPorts:
    """What push approval is given: its configuration, the Web Push sender (``None``: only
    server-sent events reach the approver page) and the origin describer."""

    config: PushConfig = field(default_factory=PushConfig)
    sender: WebPushSender | None = None
    origins: OriginDescriber = field(default_factory=_NoOrigin)
