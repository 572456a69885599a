"""Client policies on a UCServer: the interceptor that refuses a feature the administrators
denied a user, and the features a client is told in its ``Welcome``.

The table names each client method that uses a feature, and how to tell from the request
(a video call, presence or forwarding set for someone else). The caller is the one the
policy enforcer verified and bound, so this interceptor sits inside it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import grpc

from procall.policies import ClientFeature, ClientPolicies
from procall.servers.runtime.auth import current_claims_or_none

__all__ = ["FEATURES", "PolicyInterceptor"]

#: The features a request uses, given the request and its caller's user id.
Uses = Callable[[Any, str], Sequence[ClientFeature]]

F = ClientFeature


def _always(*features: ClientFeature) -> Uses:
    return lambda request, caller: features


def _for_others(feature: ClientFeature) -> Uses:
    return lambda request, caller: (feature,) if request.user_id not in ("", caller) else ()


#: Method -> the features it uses.
FEATURES: dict[str, Uses] = {
    "/procall.api.chat.v1.ChatService/SendMessage": _always(F.CHAT),
    "/procall.api.chat.v1.ChatService/CreateConversation": _always(F.CHAT),
    "/procall.api.call.v1.CallService/PlaceCall": (
        lambda request, caller: (F.CALLS, F.VIDEO) if request.video else (F.CALLS,)
    ),
    "/procall.api.call.v1.CallService/AnswerCall": _always(F.CALLS),
    "/procall.api.call.v1.CallService/PickUpCall": _always(F.CALLS),
    "/procall.api.presence.v1.PresenceService/SetPresence": _for_others(F.PRESENCE_FOR_OTHERS),
    "/procall.api.call.v1.CallService/SetForwarding": _for_others(F.FORWARDING_FOR_OTHERS),
}


class PolicyInterceptor(grpc.aio.ServerInterceptor):
    """Refuses (PERMISSION_DENIED, FEATURE_DISABLED) a call using a feature denied to its
    caller; every other call passes untouched."""

    def __init__(self, policies: ClientPolicies) -> None:
        self._policies = policies

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        uses = FEATURES.get(handler_call_details.method)
        if handler is None or uses is None or handler.unary_unary is None:
            return handler
        inner = handler.unary_unary
        policies = self._policies

        async def checked(request: Any, context: Any) -> Any:
            claims = current_claims_or_none()
            if claims is not None:
                for feature in uses(request, claims.user_id):
                    await policies.require(claims.user_id, feature)
            return await inner(request, context)

        # NamedTuple._replace is grpc's documented way of wrapping a handler
        wrapped: grpc.RpcMethodHandler[Any, Any] = handler._replace(  # type: ignore[attr-defined]
            unary_unary=checked
        )
        return wrapped
