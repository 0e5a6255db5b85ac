"""Web Push of a push request, end to end without a browser: pywebpush (configured with VAPID
keys this test generates) posts to a local HTTP server standing in for the push service, and
the test decrypts the captured body (RFC 8291, aes128gcm) with the subscription's private
key, which the test generated too. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import AsyncIterator
from typing import Any

import http_ece
import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from support.approver import SoftwareApprover, b64url, pairing_token
from support.harness import Harness, start_harness
from support.outbound import HttpPeer

TRANSFER = {"amount": 2500, "currency": "EUR", "payee": "ACME GmbH"}


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Subscription:
    """What a browser's ``pushManager.subscribe`` would hold: an ECDH P-256 key pair and a
    16-byte auth secret."""

    def __init__(self, endpoint: str) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.auth = os.urandom(16)
        self.endpoint = endpoint

    def as_json(self) -> dict[str, Any]:
        point = self.key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return {
            "endpoint": self.endpoint,
            "expirationTime": None,
            "keys": {"p256dh": b64url(point), "auth": b64url(self.auth)},
        }

    def decrypt(self, body: bytes) -> bytes:
        plain: bytes = http_ece.decrypt(
            body, private_key=self.key, auth_secret=self.auth, version="aes128gcm"
        )
        return plain


@pytest.fixture
async def webpush(database_url: str) -> AsyncIterator[tuple[Harness, HttpPeer, str]]:
    vapid = ec.generate_private_key(ec.SECP256R1())
    raw = b64url(vapid.private_numbers().private_value.to_bytes(32, "big"))
    with HttpPeer() as service:
        api, runtime = await start_harness(
            database_url,
            settings_overrides={
                "webpush_vapid_private_key": raw,
                "webpush_vapid_subject": "mailto:security@acme.example",
                "webpush_endpoint_hosts": ["127.0.0.1"],
            },
        )
        public = vapid.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        try:
            await api.put_subject("alice")
            yield api, service, b64url(public)
        finally:
            await runtime.services.push.drain()
            await api.client.aclose()
            await api.anon.aclose()
            await runtime.store.close()


async def test_a_push_request_is_sent_encrypted_to_the_subscription(
    webpush: tuple[Harness, HttpPeer, str],
) -> None:
    api, service, vapid_public = webpush
    enrolled = await api.client.post("/v1/subjects/alice/factors", json={"type": "push"})
    token = pairing_token(enrolled.json()["pairing_url"])
    device = SoftwareApprover()
    async with httpx.AsyncClient(
        transport=api.client._transport, base_url="http://stepguard.test"
    ) as phone:
        paired = await phone.post("/approve/api/pair", json=device.pair_body(token))
        assert paired.status_code == 200, paired.text
        assert paired.json()["vapid_public_key"] == vapid_public
        subscription = Subscription(f"{service.url}/wpush/v2/abc123")
        stored = await phone.post("/approve/api/subscription", json=subscription.as_json())
        assert stored.status_code == 204, stored.text
        # An endpoint that is not a configured push service is refused (no SSRF).
        elsewhere = {**subscription.as_json(), "endpoint": "https://attacker.example/collect"}
        assert (await phone.post("/approve/api/subscription", json=elsewhere)).status_code == 400

    session_id = await api.open_session()
    decision = await api.decide(session_id, "payments.transfer", context=TRANSFER)
    challenge_id = decision["challenge"]["id"]
    started = await api.client.post(f"/v1/challenges/{challenge_id}/pushes", json={})
    assert started.status_code == 201, started.text
    await api.runtime.services.push.drain()

    [request] = service.requests
    assert request.path == "/wpush/v2/abc123"
    assert request.headers["content-encoding"] == "aes128gcm"
    assert 0 < int(request.headers["ttl"]) <= 120
    assert request.headers["urgency"] == "high"
    payload = json.loads(subscription.decrypt(request.body))
    assert payload == {
        "type": "push_request",
        "push_id": started.json()["push_id"],
        "challenge_id": challenge_id,
        "summary": "Transfer EUR 2500 to ACME GmbH",
        "expires_at": payload["expires_at"],
    }
    assert str(started.json()["number"]) not in json.dumps(payload)  # never the number

    # VAPID (RFC 8292): "vapid t=<JWT>, k=<public key>", the JWT signed by that key for the
    # push service's origin.
    scheme, _, params = request.headers["authorization"].partition(" ")
    assert scheme == "vapid"
    fields = dict(part.strip().split("=", 1) for part in params.split(","))
    assert fields["k"] == vapid_public
    header, claims, signature = fields["t"].split(".")
    assert json.loads(unb64url(claims))["aud"] == service.url
    assert json.loads(unb64url(claims))["sub"] == "mailto:security@acme.example"
    raw = unb64url(signature)
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64url(vapid_public))
    key.verify(der, f"{header}.{claims}".encode(), ec.ECDSA(hashes.SHA256()))
    [sent] = await api.audit(type="push.web_push_sent")
    assert sent["details"]["push_id"] == started.json()["push_id"]


async def test_a_failing_push_service_is_audited_and_the_push_still_stands(
    webpush: tuple[Harness, HttpPeer, str],
) -> None:
    api, service, _ = webpush
    service.statuses = [410]  # the subscription is gone
    enrolled = await api.client.post("/v1/subjects/alice/factors", json={"type": "push"})
    device = SoftwareApprover()
    async with httpx.AsyncClient(
        transport=api.client._transport, base_url="http://stepguard.test"
    ) as phone:
        body = device.pair_body(pairing_token(enrolled.json()["pairing_url"]))
        assert (await phone.post("/approve/api/pair", json=body)).status_code == 200
        subscription = Subscription(f"{service.url}/gone")
        await phone.post("/approve/api/subscription", json=subscription.as_json())
    session_id = await api.open_session()
    decision = await api.decide(session_id, "payments.transfer", context=TRANSFER)
    started = await api.client.post(f"/v1/challenges/{decision['challenge']['id']}/pushes", json={})
    assert started.status_code == 201
    await api.runtime.services.push.drain()
    [failed] = await api.audit(type="push.web_push_failed")
    assert failed["details"]["reason"] == "http 410"
