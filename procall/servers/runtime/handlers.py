"""Wrapped method handlers, built once per method.

A ``grpc.aio`` server interceptor's ``intercept_service`` runs for every call; an
interceptor that wraps handlers (limits, audit, RPC metrics) builds each wrapper once
per method and hands out the same one afterwards, for as long as the inner handler it
wrapped is the one grpc resolves.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeAlias

import grpc

__all__ = ["Handler", "WrappedHandlers"]

#: A method handler (grpc.RpcMethodHandler is generic only to type checkers).
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"

#: Methods whose wrapped handlers are kept (a server has a few hundred at most; unknown
#: method names do not reach an interceptor's wrapping: they have no handler).
_MAX_CACHED = 4096


class WrappedHandlers:
    """The wrappers ``wrap(handler, method)`` made, by method (``method`` without its
    leading slash, as the policy table and the audit rules name it)."""

    def __init__(self, wrap: Callable[[Handler, str], Handler]) -> None:
        self._wrap = wrap
        self._cache: dict[str, tuple[Handler, Handler]] = {}

    def get(self, handler: Handler, path: str) -> Handler:
        """The wrapper of ``handler``, the handler of ``path`` (``/package.Service/Method``)."""
        cached = self._cache.get(path)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = self._wrap(handler, path.lstrip("/"))
        if len(self._cache) < _MAX_CACHED:
            self._cache[path] = (handler, wrapped)
        return wrapped
