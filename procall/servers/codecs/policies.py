"""Client policies between the domain and the wire."""

from __future__ import annotations

from procall.api.admin.v1 import admin_pb2
from procall.api.common.v1 import client_feature_pb2
from procall.policies import ClientPolicy, SubjectKind
from procall.servers.codecs.time import timestamp_of

__all__ = ["policy_to_proto", "subject_kind_from_proto"]


def subject_kind_from_proto(kind: int) -> SubjectKind | None:
    """The domain subject kind; None for UNSPECIFIED or a value this release does not know."""
    try:
        return SubjectKind(kind)
    except ValueError:
        return None


def policy_to_proto(policy: ClientPolicy) -> admin_pb2.ClientPolicy:
    """The wire form of a client policy."""
    return admin_pb2.ClientPolicy(
        subject_kind=admin_pb2.PolicySubjectKind.ValueType(int(policy.kind)),
        subject_id=policy.subject_id,
        denied_features=[
            client_feature_pb2.ClientFeature.ValueType(int(f)) for f in sorted(policy.denied)
        ],
        version=policy.version,
        update_time=timestamp_of(policy.update_time),
        updated_by_user_id=policy.updated_by,
    )
