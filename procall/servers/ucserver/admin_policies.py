"""The client-policy methods of the AdminService (thin: decode, ``ClientPolicies``, encode)."""

from __future__ import annotations

import grpc

from procall.api.admin.v1 import admin_service_pb2 as admin_pb
from procall.errors import Unimplemented
from procall.policies import ClientPolicies
from procall.servers.codecs.policies import policy_to_proto, subject_kind_from_proto
from procall.servers.runtime.auth import current_claims

__all__ = ["PolicyAdmin"]

Context = grpc.aio.ServicerContext[object, object]


class PolicyAdmin:
    """``GetClientPolicy``, ``SetClientPolicy`` and ``ListClientPolicies`` (mixed into the
    AdminService servicer, which sets ``_policies``)."""

    _policies: ClientPolicies | None = None

    def _policy_use_cases(self, method: str) -> ClientPolicies:
        if self._policies is None:
            raise Unimplemented(
                f"procall.api.admin.v1.AdminService/{method} is not served by this server"
            )
        return self._policies

    async def GetClientPolicy(
        self, request: admin_pb.GetClientPolicyRequest, context: Context
    ) -> admin_pb.GetClientPolicyResponse:
        """A user's or a group's client policy."""
        policies = self._policy_use_cases("GetClientPolicy")
        policy = await policies.get(
            subject_kind_from_proto(request.subject_kind), request.subject_id
        )
        return admin_pb.GetClientPolicyResponse(policy=policy_to_proto(policy))

    async def SetClientPolicy(
        self, request: admin_pb.SetClientPolicyRequest, context: Context
    ) -> admin_pb.SetClientPolicyResponse:
        """Replace a client policy over the version the admin edited."""
        policies = self._policy_use_cases("SetClientPolicy")
        wanted = request.policy
        policy = await policies.set(
            current_claims().user_id,
            subject_kind_from_proto(wanted.subject_kind),
            wanted.subject_id,
            list(wanted.denied_features),
            request.expected_version,
        )
        return admin_pb.SetClientPolicyResponse(policy=policy_to_proto(policy))

    async def ListClientPolicies(
        self, request: admin_pb.ListClientPoliciesRequest, context: Context
    ) -> admin_pb.ListClientPoliciesResponse:
        """Every client policy that was set."""
        found = await self._policy_use_cases("ListClientPolicies").list_all()
        return admin_pb.ListClientPoliciesResponse(policies=[policy_to_proto(p) for p in found])
