"""What the email/SMS use cases are given: the senders, the code key and the send limits."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from stepguard.core.factors.oob import MAX_CODE_TTL_SECONDS, Channel
from stepguard.core.notices import Notice
from stepguard.core.secret import Secret
from stepguard.service.ports import EmailSender, SmsSender


@dataclass(frozen=True, slots=True, kw_only=True)
class SendLimit:
    """At most ``count`` sends within any ``window`` (a sliding window over the send log)."""

    count: int
    window: timedelta


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryConfig:
    """``code_key`` keys the code HMACs and destination pseudonyms (derived from the secret
    keys by the composition root). Without it no code is ever sent."""

    code_key: Secret[bytes] | None = None
    code_digits: int = 6
    code_ttl: timedelta = timedelta(minutes=10)
    send_timeout_seconds: float = 10.0
    per_subject: SendLimit = SendLimit(count=5, window=timedelta(minutes=15))
    per_destination: SendLimit = SendLimit(count=5, window=timedelta(minutes=15))
    global_limits: dict[Channel, SendLimit] = field(
        default_factory=lambda: {
            Channel.EMAIL: SendLimit(count=1000, window=timedelta(hours=1)),
            Channel.SMS: SendLimit(count=200, window=timedelta(hours=1)),
        }
    )
    notice_limit: SendLimit = SendLimit(count=3, window=timedelta(hours=1))
    issuer: str = "StepGuard"

    def __post_init__(self) -> None:
        if not 6 <= self.code_digits <= 8:
            raise ValueError("codes have 6 to 8 digits")
        if not timedelta(0) < self.code_ttl <= timedelta(seconds=MAX_CODE_TTL_SECONDS):
            raise ValueError(f"a code lives at most {MAX_CODE_TTL_SECONDS} seconds")

    @property
    def longest_window(self) -> timedelta:
        windows = [self.per_subject.window, self.per_destination.window, self.notice_limit.window]
        windows += [limit.window for limit in self.global_limits.values()]
        return max(windows)


@dataclass(frozen=True, slots=True, kw_only=True)
class Outbound:
    """The delivery ports. A channel without a sender cannot be enrolled or used."""

    email: EmailSender | None = None
    sms: SmsSender | None = None
    config: DeliveryConfig = field(default_factory=DeliveryConfig)

    def sender(self, channel: Channel) -> EmailSender | SmsSender | None:
        return self.email if channel is Channel.EMAIL else self.sms


class NullNotifier:
    """Sends nothing (no delivery configured)."""

    def notify(self, *notices: Notice) -> None:
        pass

    async def drain(self) -> None:
        pass
