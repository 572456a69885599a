"""Admin views: what administrators see of the running system (transport-free).

Logged-on sessions across every UCServer (paged), the license pool and the live
servers, read through small ports (``ports.py``) that the shared store and the Lookup
client implement. The administrators' command-line client is ``procall.admin``.
"""

from procall.admin_views.model import LicenseUsage, LoggedOnSession, ServerState, state_of
from procall.admin_views.ports import LicenseCounter, LiveServers, LoggedOnSessions
from procall.admin_views.views import DEFAULT_SESSIONS_PAGE, AdminViews, SessionFilter

__all__ = [
    "DEFAULT_SESSIONS_PAGE",
    "AdminViews",
    "LicenseCounter",
    "LicenseUsage",
    "LiveServers",
    "LoggedOnSession",
    "LoggedOnSessions",
    "ServerState",
    "SessionFilter",
    "state_of",
]
