"""Wire models of push approval: the API's push endpoints and the approver page's JSON."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints

from stepguard.adapters.web.schemas import JSON_INTEGER, Identifier, IpAddress, Out, Strict

B64Url = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,512}$")]
Token = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,256}$")]
UserAgent = Annotated[str, StringConstraints(pattern=r"^[^\x00]*$", max_length=512)]


class PushStartIn(Strict):
    ip: IpAddress | None = Field(default=None, description="The requesting browser's address.")
    user_agent: UserAgent | None = None


class PushOut(Out):
    push_id: str
    challenge_id: str
    status: Literal["pending", "approved", "denied", "wrong_number", "superseded", "expired"]
    number: int = Field(description="Show this on the requesting screen only.")
    expires_at: datetime


class JwkIn(Strict):
    kty: Literal["EC"]
    crv: Literal["P-256"]
    x: B64Url
    y: B64Url
    ext: bool | None = None
    key_ops: list[Literal["verify"]] | None = None


class PairIn(Strict):
    pairing: Token
    public_key: JwkIn
    signature: B64Url = Field(description="ES256 (raw r||s, base64url) over the pair payload.")


class PairOut(Out):
    factor_id: str
    vapid_public_key: str | None = None


class AnswerIn(Strict):
    push_id: Identifier
    factor_id: Identifier
    number: Annotated[int, Field(ge=0, le=99), JSON_INTEGER]
    answer: Literal["approve", "deny"]
    signature: B64Url


class AnswerOut(Out):
    push_id: str
    status: Literal["approved", "denied"]


class SubscriptionKeysIn(Strict):
    p256dh: B64Url
    auth: B64Url


class SubscriptionIn(Strict):
    model_config = Strict.model_config | {"extra": "ignore"}  # expirationTime and the like

    endpoint: Annotated[str, StringConstraints(pattern=r"^https?://[^\s\x00]+$", max_length=2048)]
    keys: SubscriptionKeysIn


class PendingOut(Out):
    factor_id: str
    requests: list[dict[str, Any]]
