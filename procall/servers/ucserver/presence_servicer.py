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
from procall.presence.model import PresenceChange
from procall.servers.codecs.presence import (
    availability_from_proto,
    capabilities_from_proto,
    presence_to_proto,
)
from procall.servers.ucserver.session_servicer import session_claims
from procall.session.manager import SessionManager

__all__ = ["MAX_BATCH", "PresenceServicer"]

Context = grpc.aio.ServicerContext[object, object]
MAX_BATCH = 1000
_MASKABLE = {"availability", "note", "capabilities"}


def _user_ids(values: list[str], field: str) -> list[str]:
    if len(values) > MAX_BATCH:
        raise InvalidArgument.field(field, f"at most {MAX_BATCH} users per request")
    if any(not v or len(v) > 64 for v in values):
        raise InvalidArgument.field(field, "user ids must be 1 to 64 characters")
    return values


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
        await session_claims(context, self._sessions)
        (user_id,) = _user_ids([request.user_id], "user_id")
        (presence,) = await self._presence.read([user_id])
        return presence_pb.GetPresenceResponse(presence=presence_to_proto(presence))

    async def BatchGetPresence(
        self, request: presence_pb.BatchGetPresenceRequest, context: Context
    ) -> presence_pb.BatchGetPresenceResponse:
        await session_claims(context, self._sessions)
        found = await self._presence.read(_user_ids(list(request.user_ids), "user_ids"))
        return presence_pb.BatchGetPresenceResponse(presences=[presence_to_proto(p) for p in found])

    async def SetPresence(
        self, request: presence_pb.SetPresenceRequest, context: Context
    ) -> presence_pb.SetPresenceResponse:
        claims = await session_claims(context, self._sessions)
        await self._sessions.check_home(claims)  # where the caller's session lives
        paths = set(request.update_mask.paths) or _MASKABLE
        if paths - _MASKABLE:
            unknown = ", ".join(sorted(paths - _MASKABLE))
            raise InvalidArgument.field("update_mask", f"unknown field(s): {unknown}")
        target = request.user_id or claims.user_id
        try:
            availability = availability_from_proto(request.availability)
        except ValueError:
            raise InvalidArgument.field("availability", "is not a known value") from None
        change = PresenceChange(
            availability=availability if "availability" in paths else None,
            note=request.note if "note" in paths else None,
            session_capabilities=(claims.session_id, capabilities_from_proto(request.capabilities))
            if "capabilities" in paths
            and target == claims.user_id
            and self._sessions.hub.get(claims.session_id) is not None
            else None,
        )
        presence = await self._presence.set_presence(claims.user_id, target, change)
        return presence_pb.SetPresenceResponse(presence=presence_to_proto(presence))

    async def ListContacts(
        self, request: presence_pb.ListContactsRequest, context: Context
    ) -> presence_pb.ListContactsResponse:
        claims = await session_claims(context, self._sessions)
        size = request.page_size or 200
        if size < 0 or size > 1000:
            raise InvalidArgument.field("page_size", "must be between 0 and 1000")
        try:
            start = int(request.page_token or "0")
        except ValueError:
            raise InvalidArgument.field("page_token", "is not a token from this API") from None
        contacts = await self._presence.contacts_of(claims.user_id)
        page = contacts[start : start + size]
        found = await self._presence.get_many(page) if page else []
        more = start + size < len(contacts)
        return presence_pb.ListContactsResponse(
            contacts=[presence_to_proto(p) for p in found],
            next_page_token=str(start + size) if more else "",
        )

    async def AddContacts(
        self, request: presence_pb.AddContactsRequest, context: Context
    ) -> presence_pb.AddContactsResponse:
        claims = await session_claims(context, self._sessions)
        await self._sessions.check_home(claims)
        ids = _user_ids(list(request.user_ids), "user_ids")
        names = list(request.usernames)
        if len(ids) + len(names) > MAX_BATCH:
            raise InvalidArgument.field("usernames", f"at most {MAX_BATCH} users per request")
        if any(not n or len(n) > 256 for n in names):
            raise InvalidArgument.field("usernames", "usernames must be 1 to 256 characters")
        found = await self._presence.add_contacts(claims.user_id, ids, usernames=names)
        return presence_pb.AddContactsResponse(contacts=[presence_to_proto(p) for p in found])

    async def RemoveContacts(
        self, request: presence_pb.RemoveContactsRequest, context: Context
    ) -> presence_pb.RemoveContactsResponse:
        claims = await session_claims(context, self._sessions)
        await self._sessions.check_home(claims)
        await self._presence.remove_contacts(
            claims.user_id, _user_ids(list(request.user_ids), "user_ids")
        )
        return presence_pb.RemoveContactsResponse()
