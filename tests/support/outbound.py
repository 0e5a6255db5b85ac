"""Real peers for the delivery tests: an SMTP server (aiosmtpd, STARTTLS with a certificate
made here) and an HTTP server standing in for an SMS provider, both recording what they got.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import gc
import ipaddress
import json
import re
import ssl
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SmtpServer  # noqa: N811 - aiosmtpd's name for its server
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from support.services import free_port

SMTP_USER = "stepguard"
SMTP_PASSWORD = "smtp-password-1"


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost; returns (cert, key) paths."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "stepguard test smtp")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path = directory / "smtp-cert.pem"
    key_path = directory / "smtp-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@dataclass
class Mailbox:
    """What the SMTP server received, and how each session went."""

    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str], bool, str | None]] = field(default_factory=list)
    # An outage: while set, every message is refused with this reply (after it arrived).
    refuse_with: str | None = None

    async def handle_DATA(  # noqa: N802 - the hook name aiosmtpd calls
        self, server: SmtpServer, session: Session, envelope: Envelope
    ) -> str:
        if self.refuse_with is not None:
            return self.refuse_with
        content = envelope.original_content or b""
        message = email.message_from_bytes(content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        self.envelopes.append(
            (
                str(envelope.mail_from),
                [str(r) for r in envelope.rcpt_tos],
                session.ssl is not None,
                str(session.login_data) if session.authenticated else None,
            )
        )
        return "250 OK"

    def text(self, index: int = -1) -> str:
        part = self.messages[index].get_body(preferencelist=("plain",))
        assert part is not None
        return str(part.get_content())

    def html(self, index: int = -1) -> str:
        part = self.messages[index].get_body(preferencelist=("html",))
        assert part is not None
        return str(part.get_content())

    def code(self, index: int = -1) -> str:
        match = re.search(r"Your code: ([0-9]{6,8})", self.text(index))
        assert match is not None, self.text(index)
        return match.group(1)

    def to(self, index: int = -1) -> str:
        return str(self.messages[index]["To"])


def _authenticator(
    server: SmtpServer, session: Session, envelope: Envelope, mechanism: str, data: Any
) -> AuthResult:
    ok = (
        isinstance(data, LoginPassword)
        and data.login == SMTP_USER.encode()
        and data.password == SMTP_PASSWORD.encode()
    )
    return AuthResult(success=ok, handled=False)


@dataclass
class SmtpPeer:
    host: str
    port: int
    ca_file: Path
    mailbox: Mailbox
    controller: Controller
    stopped: bool = False

    def stop(self) -> None:
        """Take the server down (an outage); idempotent."""
        if not self.stopped:
            self.stopped = True
            self.controller.stop()
            # aiosmtpd can leave a finished session's server-side socket to the garbage
            # collector; collect it here, where its ResourceWarning belongs to the peer and
            # not to whichever later test the collector happens to run in.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ResourceWarning)
                gc.collect()


@contextmanager
def smtp_server(
    directory: Path, *, starttls: bool = True, require_auth: bool = False
) -> Iterator[SmtpPeer]:
    """aiosmtpd in a thread on a free port (its Controller cannot bind port 0)."""
    cert, key = make_certificate(directory)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    mailbox = Mailbox()
    port = free_port()
    options: dict[str, Any] = {}
    if starttls:
        options.update(tls_context=context, require_starttls=True)
    if require_auth:
        options.update(auth_required=True, authenticator=_authenticator)
    controller = Controller(mailbox, hostname="127.0.0.1", port=port, **options)
    controller.start()
    peer = SmtpPeer(
        host="127.0.0.1", port=port, ca_file=cert, mailbox=mailbox, controller=controller
    )
    try:
        yield peer
    finally:
        peer.stop()


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.body.decode(), strict_parsing=True).items()}

    def json(self) -> Any:
        return json.loads(self.body)


class HttpPeer:
    """A local HTTP server that records requests and answers with scripted statuses
    (the last one repeats). ``delay`` makes it slow, to exercise client timeouts."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.statuses: list[int] = [201]
        self.delay = 0.0
        self._lock = threading.Lock()
        peer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                with peer._lock:
                    peer.requests.append(
                        Recorded(
                            method="POST",
                            path=self.path,
                            headers={k.lower(): v for k, v in self.headers.items()},
                            body=body,
                        )
                    )
                    index = len(peer.requests) - 1
                    status = peer.statuses[min(index, len(peer.statuses) - 1)]
                if peer.delay:
                    time.sleep(peer.delay)
                payload = b'{"sid": "SM123", "status": "queued"}'
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> HttpPeer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def sms_code(self, index: int = -1) -> str:
        request = self.requests[index]
        text = (
            request.form()["Body"]
            if "form" in request.headers.get("content-type", "")
            else request.json()["body"]
        )
        match = re.match(r"([0-9]{6,8}) is your", text)
        assert match is not None, text
        return match.group(1)
