"""``python -m stepguard.demo.bank``: serve the bank (settings from ``ACME_BANK_*``)."""

from __future__ import annotations

import uvicorn

from stepguard.demo.bank.settings import BankSettings


def main() -> None:
    settings = BankSettings()  # type: ignore[call-arg]  # from ACME_BANK_* variables
    uvicorn.run(
        "stepguard.demo.bank.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        log_level="warning",
        access_log=False,
        proxy_headers=False,
        server_header=False,
    )


if __name__ == "__main__":
    main()
