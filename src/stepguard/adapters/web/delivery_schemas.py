"""Wire models of the email/SMS delivery endpoint."""

from __future__ import annotations

from stepguard.adapters.web.schemas import Identifier, Strict


class DeliveryIn(Strict):
    factor_id: Identifier
