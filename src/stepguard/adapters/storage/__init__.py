"""Storage adapter: the ``Store`` port on SQLAlchemy 2 async, for SQLite and PostgreSQL.

Public API (everything else in this package is private)::

    box = SecretBox([current_key, *old_keys])          # stepguard.adapters.crypto
    await migrate("sqlite:///var/stepguard.db")        # Alembic upgrade to head, in code
    store = SqlStore("sqlite:///var/stepguard.db", box)
    async with store.transaction() as uow: ...         # the UnitOfWork port
    report = await verify_audit_chain(store)           # core.audit.ChainReport
    await store.reencrypt_secrets()                    # after a key rotation
    await store.close()

``tables`` (the schema) and ``migrations`` (its history) are modules of this package.
"""

from stepguard.adapters.storage._engine import normalize_url
from stepguard.adapters.storage._migrate import alembic_config, migrate
from stepguard.adapters.storage._repositories import ReadOnlyTransactionError, SqlUnitOfWork
from stepguard.adapters.storage._store import SqlStore, verify_audit_chain

__all__ = [
    "ReadOnlyTransactionError",
    "SqlStore",
    "SqlUnitOfWork",
    "alembic_config",
    "migrate",
    "normalize_url",
    "verify_audit_chain",
]
