"""SQL storage: engines with bounded waits, the shared schema and its migrations.

``create_engine`` / ``SqlDatabase`` give any area an async engine whose failures
become ``Unavailable``; ``upgrade_to_head`` migrates a database; the Directory's
stores (``SqlUserStore``, ``SqlDelegationStore``, ``SqlHomeServerOverrides``)
implement its ports on SQLite, PostgreSQL and Microsoft SQL Server.
"""

from procall.storage.sql.directory_delegations import SqlDelegationStore, SqlHomeServerOverrides
from procall.storage.sql.directory_users import SqlUserStore
from procall.storage.sql.engine import (
    SqlConfigError,
    SqlDatabase,
    create_engine,
    describe_url,
    is_unavailable_error,
)
from procall.storage.sql.migrate import current_revision, head_revision, upgrade_to_head
from procall.storage.sql.tables import metadata

__all__ = [
    "SqlConfigError",
    "SqlDatabase",
    "SqlDelegationStore",
    "SqlHomeServerOverrides",
    "SqlUserStore",
    "create_engine",
    "current_revision",
    "describe_url",
    "head_revision",
    "is_unavailable_error",
    "metadata",
    "upgrade_to_head",
]
