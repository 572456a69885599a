"""Client policies: administrators deny features (chat, calls, video, conferences, file
sharing, acting for others) to a user's clients or to a group's members; the servers check
``ClientPolicies.require`` before the feature and tell clients what they may use.

A user's own policy overrides the policies of the user's groups; without one, the user is
denied every feature any of the user's groups denies.
"""

from procall.policies.model import ClientFeature, ClientPolicy, SubjectKind, denied_for
from procall.policies.ports import GroupsOf, PolicyStore
from procall.policies.service import ClientPolicies

__all__ = [
    "ClientFeature",
    "ClientPolicies",
    "ClientPolicy",
    "GroupsOf",
    "PolicyStore",
    "SubjectKind",
    "denied_for",
]
