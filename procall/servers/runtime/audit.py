"""The audit interceptor: records the audited methods of a server, in one place.

A server lists the methods it audits (``AuditRule`` per ``package.Service/Method``);
after each call of one of them, one ``AuditEvent`` goes to the ``AuditLog``: the
verified caller (a user id, ``service:<role>/<id>``, or ``anonymous``), the action
(``directory.CreateUser``), the user it was for, the outcome (SUCCESS, DENIED for
refusals of the caller, FAILED for other errors, with the error's reason) and the
caller's network address. A rule may record only some calls (a delegate setting
someone else's presence, not a user setting her own). Recording only queues the
event (``BufferedAuditLog``): the audited call neither waits for nor fails with the
audit store. Nothing secret is recorded: rules pick fields, never whole requests.

The interceptor sits inside the error-mapping interceptor (it sees the domain
errors) and inside the policy enforcer (it reads the caller that one bound).
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc

from procall.audit import AuditEvent, AuditLog, AuditOutcome
from procall.errors import PermissionDenied, ProcallError, Unauthenticated
from procall.servers.runtime.auth import current_claims_or_none, current_service
from procall.servers.runtime.handlers import WrappedHandlers
from procall.servers.runtime.limits import source_of

__all__ = ["AuditInterceptor", "AuditRule", "actor_of"]

Context = grpc.aio.ServicerContext[Any, Any]


def _nobody(request: Any, response: Any) -> str:
    return ""


def _always(request: Any, actor: str) -> bool:
    return True


def _no_detail(request: Any) -> dict[str, str]:
    return {}


@dataclass(frozen=True)
class AuditRule:
    """How one method is audited."""

    #: Stable action name, ``<area>.<Method>``.
    action: str
    #: The user the call was for, from the request (and the response, None on failure).
    subject: Callable[[Any, Any], str] = _nobody
    #: Whether this call is audited at all, from the request and the actor.
    when: Callable[[Any, str], bool] = _always
    #: Short, secret-free details from the request.
    detail: Callable[[Any], dict[str, str]] = field(default=_no_detail)


def actor_of(context: Context) -> str:
    """Who is calling, as the audit log names it."""
    service = current_service()
    if service is not None:
        return f"service:{service.role}/{service.server_id}"
    claims = current_claims_or_none()
    return claims.user_id if claims is not None else "anonymous"


def _outcome(error: BaseException | None) -> tuple[AuditOutcome, dict[str, str]]:
    if error is None:
        return AuditOutcome.SUCCESS, {}
    if isinstance(error, PermissionDenied | Unauthenticated):
        return AuditOutcome.DENIED, {"reason": error.reason}
    if isinstance(error, ProcallError):
        return AuditOutcome.FAILED, {"reason": error.reason}
    return AuditOutcome.FAILED, {"reason": "INTERNAL"}


class AuditInterceptor(grpc.aio.ServerInterceptor):
    """Records calls of the methods named in ``rules`` (see the module doc)."""

    def __init__(
        self,
        log: AuditLog,
        rules: Mapping[str, AuditRule],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._log = log
        self._rules = dict(rules)
        self._clock = clock
        self._wrapped = WrappedHandlers(self._wrap)

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        rule = self._rules.get(handler_call_details.method.lstrip("/"))
        if handler is None or rule is None or handler.unary_unary is None:
            return handler  # only unary methods are audited
        return self._wrapped.get(handler, handler_call_details.method)

    def _wrap(
        self, handler: grpc.RpcMethodHandler[Any, Any], method: str
    ) -> grpc.RpcMethodHandler[Any, Any]:
        rule = self._rules[method]
        behaviour: Callable[..., Any] | None = handler.unary_unary
        assert behaviour is not None
        log, clock = self._log, self._clock

        async def audited(request: Any, context: Context) -> Any:
            actor = actor_of(context)
            if not rule.when(request, actor):
                result = behaviour(request, context)
                return await result if inspect.isawaitable(result) else result
            response: Any = None
            failure: BaseException | None = None
            try:
                result = behaviour(request, context)
                response = await result if inspect.isawaitable(result) else result
                return response
            except Exception as error:
                failure = error
                raise
            finally:
                outcome, detail = _outcome(failure)
                try:
                    event = AuditEvent(
                        time=clock(),
                        actor=actor,
                        action=rule.action,
                        outcome=outcome,
                        subject=rule.subject(request, response),
                        source=source_of(context.peer() or ""),
                        detail={**rule.detail(request), **detail},
                    )
                    await log.record(event)
                except Exception:  # the audit log never fails the audited call
                    pass

        wrapped: grpc.RpcMethodHandler[Any, Any] = handler._replace(unary_unary=audited)  # type: ignore[attr-defined]
        return wrapped
