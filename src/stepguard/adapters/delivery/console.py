"""Development only: "send" messages by writing them to a file or to standard error.

The composition root refuses to build this sender unless ``STEPGUARD_DEV_MODE=1``: it writes
codes in clear text.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from stepguard.adapters.delivery.render import Renderer
from stepguard.service.ports import CodeMessage, NoticeMessage

__all__ = ["ConsoleSender"]


class ConsoleSender:
    """One JSON line per message: ``{"channel", "to", "subject", "text"}``."""

    def __init__(self, channel: str, *, path: Path | None = None, renderer: Renderer | None = None):
        self._channel = channel
        self._path = path
        self._renderer = renderer or Renderer()

    def __repr__(self) -> str:
        return f"ConsoleSender(channel={self._channel!r})"

    def _write(self, to: str, subject: str, text: str) -> None:
        line = json.dumps({"channel": self._channel, "to": to, "subject": subject, "text": text})
        if self._path is None:
            print(line, file=sys.stderr, flush=True)
            return
        with self._path.open("a", encoding="utf-8") as file:
            file.write(line + "\n")

    async def send_code(self, message: CodeMessage) -> None:
        if self._channel == "email":
            content = self._renderer.code_email(message)
            self._write(message.to, content.subject, content.text)
        else:
            self._write(message.to, "", self._renderer.code_sms(message))

    async def send_notice(self, message: NoticeMessage) -> None:
        if self._channel == "email":
            content = self._renderer.notice_email(message)
            self._write(message.to, content.subject, content.text)
        else:
            self._write(message.to, "", self._renderer.notice_sms(message))
