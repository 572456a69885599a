"""PresenceService: read and set presence, manage contact lists (thin).

Every call on the caller's home server keeps the caller's session live there
(``session_claims``), so a presence set through a session that never connected
still ends with that session.
"""

from __future__ import annotations

import grpc

from procall.api.presence.v1 import presence_service_pb2 as presence_pb
from procall.api.presence.v1 import presence_service_pb2_grpc as presence_grpc
from procall.api.session.v1 import session_pb2
from procall.errors import InvalidArgument
from procall.presence.manager import PresenceManager
from procall.presence.policy import (
    CallerSession,
    check_user_ids,
    check_usernames,
    requested_change,
)
from procall.servers.codecs.presence import (
    availability_from_proto,
    capabilities_from_proto,
    presence_to_proto,
)
from procall.servers.ucserver.session_servicer import session_claims
from procall.session.manager import SessionManager

__all__ = ["PresenceServicer"]

Context = grpc.aio.ServicerContext[object, object]


class PresenceServicer(presence_grpc.PresenceServiceServicer):
    """Decodes requests, calls the PresenceManager, encodes replies."""

    def __init__(
        self, presence: PresenceManager, sessions: SessionManager[session_pb2.Event]
    ) -> None:
        self._presence = presence
        self._sessions = sessions

    async def GetPresence(
        self, request: presence_pb.GetPresenceRequest, context: Context
    ) -> presence_pb.GetPresenceResponse:
        await session_claims(self._sessions)
        (user_id,) = check_user_ids([request.user_id], "user_id")
        (presence,) = await self._presence.read([user_id])
        return presence_pb.GetPresenceResponse(presence=presence_to_proto(presence))

    async def BatchGetPresence(
        self, request: presence_pb.BatchGetPresenceRequest, context: Context
    ) -> presence_pb.BatchGetPresenceResponse:
        await session_claims(self._sessions)
        found = await self._presence.read(check_user_ids(list(request.user_ids), "user_ids"))
        return presence_pb.BatchGetPresenceResponse(presences=[presence_to_proto(p) for p in found])

    async def SetPresence(
        self, request: presence_pb.SetPresenceRequest, context: Context
    ) -> presence_pb.SetPresenceResponse:
        claims = await session_claims(self._sessions)
        await self._sessions.check_home(claims)  # where the caller's session lives
        try:
            availability = availability_from_proto(request.availability)
        except ValueError:
            raise InvalidArgument.field("availability", "is not a known value") from None
        target = request.user_id or claims.user_id
        change = requested_change(
            CallerSession(
                claims.user_id, claims.session_id, self._sessions.is_live(claims.session_id)
            ),
            target,
            request.update_mask.paths,
            availability,
            request.note,
            capabilities_from_proto(request.capabilities),
        )
        presence = await self._presence.set_presence(claims.user_id, target, change)
        return presence_pb.SetPresenceResponse(presence=presence_to_proto(presence))

    async def ListContacts(
        self, request: presence_pb.ListContactsRequest, context: Context
    ) -> presence_pb.ListContactsResponse:
        claims = await session_claims(self._sessions)
        found, token = await self._presence.list_contacts(
            claims.user_id, request.page_size, request.page_token
        )
        return presence_pb.ListContactsResponse(
            contacts=[presence_to_proto(p) for p in found], next_page_token=token
        )

    async def AddContacts(
        self, request: presence_pb.AddContactsRequest, context: Context
    ) -> presence_pb.AddContactsResponse:
        claims = await session_claims(self._sessions)
        await self._sessions.check_home(claims)
        ids = check_user_ids(list(request.user_ids), "user_ids")
        names = check_usernames(list(request.usernames), "usernames", len(ids))
        found = await self._presence.add_contacts(claims.user_id, ids, usernames=names)
        return presence_pb.AddContactsResponse(contacts=[presence_to_proto(p) for p in found])

    async def RemoveContacts(
        self, request: presence_pb.RemoveContactsRequest, context: Context
    ) -> presence_pb.RemoveContactsResponse:
        claims = await session_claims(self._sessions)
        await self._sessions.check_home(claims)
        await self._presence.remove_contacts(
            claims.user_id, check_user_ids(list(request.user_ids), "user_ids")
        )
        return presence_pb.RemoveContactsResponse()
