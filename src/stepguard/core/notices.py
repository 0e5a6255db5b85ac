"""Notices to the user about security-relevant changes to their account.

Sent out of band (email, and SMS where enrolled) after the change committed; they carry no
code, secret or link, only what happened and when (OWASP ASVS 6.3.7 / 2.2.3 in v4).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class NoticeType(StrEnum):
    FACTOR_ADDED = "factor_added"
    FACTOR_REMOVED = "factor_removed"
    RECOVERY_CODES_USED = "recovery_codes_used"
    RECOVERY_CODES_REGENERATED = "recovery_codes_regenerated"
    LOCKOUT_REACHED = "lockout_reached"
    NEW_DEVICE_STEP_UP = "new_device_step_up"
    PUSH_PAUSED = "push_paused"


@dataclass(frozen=True, slots=True, kw_only=True)
class Notice:
    """One notice for one subject. ``details`` are short, non-secret strings (a factor type,
    a device description) that the message templates may show."""

    subject_id: str
    type: NoticeType
    details: dict[str, str] = field(default_factory=dict)
