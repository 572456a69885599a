"""Edit leases: several administrators at once (transport-free).

``EditLeases`` (the use cases) takes, renews, releases and lists the leases of
configuration properties, users and groups through a ``LeaseStore`` (Redis, shared by every
server); writers of leased resources ask it ``fencing_for`` before they write (through
their own ``LeaseGuard``-shaped Protocol).
"""

from procall.leases.model import (
    DEFAULT_LEASE_TTL,
    MAX_LEASE_TTL,
    MAX_RESOURCE_CHARS,
    MIN_LEASE_TTL,
    EditLease,
    check_resource,
    new_lease_id,
    resource_of_lease,
)
from procall.leases.ports import LeaseGuard, LeaseStore
from procall.leases.service import EditLeases, lease_held

__all__ = [
    "DEFAULT_LEASE_TTL",
    "MAX_LEASE_TTL",
    "MAX_RESOURCE_CHARS",
    "MIN_LEASE_TTL",
    "EditLease",
    "EditLeases",
    "LeaseGuard",
    "LeaseStore",
    "check_resource",
    "lease_held",
    "new_lease_id",
    "resource_of_lease",
]
