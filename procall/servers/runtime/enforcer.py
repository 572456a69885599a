"""The one place every RPC of every procall server is authenticated and authorised.

``PolicyEnforcer`` is the outermost server interceptor of ``GrpcServer``. For a
method that is not public it wraps the handler (a ``grpc.aio.ServerInterceptor``
alone cannot see the TLS peer) so that, before the handler runs:

1. the bearer token (``authorization: Bearer <token>``), when sent, is verified
   by the server's ``TokenChecker`` (which keeps verified claims until they
   expire and checks revocation where the server knows it);
2. the calling procall server, when the policy admits services, is identified
   (mutual-TLS certificate or plain-mode proof, ``identity.py``);
3. the method's policy (``policy.POLICIES``) is checked: no or invalid
   credentials answer UNAUTHENTICATED, valid ones of the wrong kind
   PERMISSION_DENIED (each with ``ErrorInfo``), and both are recorded in the
   audit log when one is given; a method without a policy is refused;
4. the verified caller is bound (``auth.bind_caller``) for the handler, which
   reads it with ``current_claims()`` / ``current_service()``.

Authentication comes before anything the handler would answer, UNIMPLEMENTED
included. The handler's kind is kept (an async generator stays one): the aio
server chooses how to run a handler by its kind.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, NoReturn, Protocol

import grpc
from grpc.experimental import wrap_server_method_handler

from procall.audit import AuditEvent, AuditLog, AuditOutcome
from procall.errors import PermissionDenied, ProcallError, Unauthenticated, Unavailable
from procall.servers.runtime.auth import CallerIdentity, bind_caller, reset_caller
from procall.servers.runtime.errors import status_for
from procall.servers.runtime.identity import IdentifyService, service_identity
from procall.servers.runtime.policy import POLICIES, Policy, SessionRule
from procall.session.tokens import SessionClaims

__all__ = ["NoTokens", "PolicyEnforcer", "TokenChecker"]

_log = logging.getLogger(__name__)
_STATUS_DETAILS_KEY = "grpc-status-details-bin"
_BEARER = "Bearer "
Context = grpc.aio.ServicerContext[Any, Any]


class TokenChecker(Protocol):
    """Checks session tokens (a UCServer's ``SessionManager``, or a public-key verifier)."""

    def verify(self, token: str) -> SessionClaims:
        """The claims of a valid token; ``Unauthenticated`` for any other."""
        ...


class NoTokens:
    """The verifier of a server configured to accept no session tokens."""

    def verify(self, token: str) -> SessionClaims:
        """Refuses every token."""
        raise Unauthenticated(
            "this server accepts no session tokens ([auth] verify_key_file is not set)"
        )


def _bearer(context: Context) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization" and isinstance(value, str):
            if value.startswith(_BEARER):
                return value[len(_BEARER) :].strip()
            return ""
    return None


class PolicyEnforcer(grpc.aio.ServerInterceptor):
    """Authenticates every call and checks its method's policy (see module doc)."""

    def __init__(
        self,
        verifier: TokenChecker,
        *,
        identify: IdentifyService = service_identity,
        policies: Mapping[str, Policy] = POLICIES,
        audit: AuditLog | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.verifier = verifier
        self._identify = identify
        self._policies = policies
        self._audit = audit
        self._clock = clock

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        policy = self._policies.get(method)
        if policy is not None and policy.public:
            return handler
        if policy is None:
            _log.error("refusing %s: the method has no policy in procall's table", method)
        return wrap_server_method_handler(  # type: ignore[no-untyped-call,no-any-return]
            lambda behaviour: self._wrap(behaviour, method, policy), handler
        )

    # -- the check ---------------------------------------------------------------------------

    def admit(self, context: Context, method: str, policy: Policy | None) -> CallerIdentity:
        """The verified caller of ``method``; ``Unauthenticated`` / ``PermissionDenied``."""
        token = _bearer(context)
        claims: SessionClaims | None = None
        if token is not None:
            if not token:
                raise Unauthenticated("send the session token as `authorization: Bearer <token>`")
            claims = self.verifier.verify(token)
        service = None
        if policy is not None and policy.roles:
            service = self._identify(context, method)
        caller = CallerIdentity(claims=claims, service=service, peer=context.peer() or "")
        if policy is not None:
            if service is not None and service.role in policy.roles:
                return caller
            if claims is not None and (
                policy.session is SessionRule.USER
                or (policy.session is SessionRule.ADMIN and claims.admin)
            ):
                return caller
        needs = policy.describe() if policy is not None else "a policy, and has none"
        name = method.rsplit("/", 1)[-1]
        if claims is None and service is None:
            how = (
                "call with a procall service identity"
                if policy is not None and policy.session is SessionRule.NONE
                else "send `authorization: Bearer <token>` from Login"
            )
            raise Unauthenticated(f"{name} needs {needs}: {how}")
        raise PermissionDenied(f"{name} needs {needs}")

    async def _admit_or_refuse(
        self, context: Context, method: str, policy: Policy | None
    ) -> CallerIdentity:
        try:
            return self.admit(context, method, policy)
        except ProcallError as error:
            await self._refuse(context, method, error)
        except Exception:  # a fault of the check itself: refuse, and never leak its text
            _log.exception("checking the caller of %s failed", method)
            await self._refuse(
                context, method, Unavailable("the caller could not be checked; try again")
            )

    async def _refuse(self, context: Context, method: str, error: ProcallError) -> NoReturn:
        if self._audit is not None and isinstance(error, Unauthenticated | PermissionDenied):
            await self._record(context, method, error)
        code, status = status_for(error)
        await context.abort(
            code,
            status.message,
            trailing_metadata=((_STATUS_DETAILS_KEY, status.SerializeToString()),),
        )
        raise AssertionError("abort returned")  # pragma: no cover

    async def _record(self, context: Context, method: str, error: ProcallError) -> None:
        assert self._audit is not None
        try:
            denied = isinstance(error, PermissionDenied)
            event = AuditEvent(
                time=self._clock(),
                actor=self._actor(context, method),
                action="auth.permission_denied" if denied else "auth.unauthenticated",
                outcome=AuditOutcome.DENIED,
                source=context.peer() or "",
                detail={"method": method.lstrip("/"), "reason": error.reason},
            )
            await self._audit.record(event)
        except Exception:  # recording must never change the answer
            _log.warning("could not record a refused call of %s", method, exc_info=True)

    def _actor(self, context: Context, method: str) -> str:
        token = _bearer(context)
        if token:
            try:
                return self.verifier.verify(token).user_id
            except ProcallError:
                pass
        service = self._identify(context, method)
        if service is not None:
            return f"service:{service.role}/{service.server_id}"
        return "anonymous"

    # -- wrapping handlers -------------------------------------------------------------------

    def _wrap(
        self, behaviour: Callable[..., Any], method: str, policy: Policy | None
    ) -> Callable[..., Any]:
        if inspect.isasyncgenfunction(behaviour):

            async def streaming(request: Any, context: Context) -> AsyncIterator[Any]:
                caller = await self._admit_or_refuse(context, method, policy)
                bound = bind_caller(caller)
                try:
                    async for item in behaviour(request, context):
                        yield item
                finally:
                    _reset(bound)

            return streaming

        async def unary(request: Any, context: Context) -> Any:
            caller = await self._admit_or_refuse(context, method, policy)
            bound = bind_caller(caller)
            try:
                result = behaviour(request, context)
                if inspect.isawaitable(result):
                    result = await result
                return result
            finally:
                _reset(bound)

        return unary


def _reset(bound: Any) -> None:
    try:
        reset_caller(bound)
    except ValueError:  # a generator finalised in another context: nothing left to undo
        pass
