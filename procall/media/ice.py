"""Which local addresses a leg offers as ICE host candidates.

aioice gathers host candidates from every interface except loopback and has no per-connection
option to choose them (``aioice.ice.get_host_addresses`` is a module function called while
gathering). procall needs both: a MediaServer announces only its configured media addresses,
and tests run on 127.0.0.1 so that no packet leaves loopback.

The only hook is process-wide, so it is installed once, here, by :func:`install_host_address_hook`,
and does nothing by itself: it routes aioice's lookup through a context variable, and only the
code running inside :func:`host_addresses` (a leg's offer/answer, whose gathering runs in the
same task) sees other addresses. Everything else in the process keeps aioice's own behaviour.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar

import aioice.ice

__all__ = ["LOOPBACK", "host_addresses", "install_host_address_hook"]

#: The host addresses of loopback-only tests.
LOOPBACK: tuple[str, ...] = ("127.0.0.1",)

_CHOSEN: ContextVar[tuple[str, ...] | None] = ContextVar(
    "procall_media_host_addresses", default=None
)
_HOOK_MARK = "_procall_host_address_hook"


def install_host_address_hook() -> None:
    """Route aioice's host-address discovery through :func:`host_addresses` (once per process).

    This is the one process-wide patch of the media package: it replaces
    ``aioice.ice.get_host_addresses`` with a wrapper that returns the addresses chosen by the
    innermost :func:`host_addresses` block, and aioice's own answer outside such a block.
    Calling it again is harmless.
    """
    original = aioice.ice.get_host_addresses
    if getattr(original, _HOOK_MARK, False):
        return

    def chosen_or_discovered(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        chosen = _CHOSEN.get()
        if chosen is None:
            return original(use_ipv4=use_ipv4, use_ipv6=use_ipv6)
        return [address for address in chosen if (use_ipv6 if ":" in address else use_ipv4)]

    setattr(chosen_or_discovered, _HOOK_MARK, True)
    aioice.ice.get_host_addresses = chosen_or_discovered


@contextmanager
def host_addresses(addresses: Sequence[str] | None) -> Iterator[None]:
    """Offer only ``addresses`` as host candidates for the ICE gathering done in this block.

    ``None`` keeps aioice's discovery (every interface but loopback). Gathering happens in
    ``setLocalDescription``, so wrap that call (tasks started inside inherit the choice).
    """
    install_host_address_hook()
    token = _CHOSEN.set(None if addresses is None else tuple(addresses))
    try:
        yield
    finally:
        _CHOSEN.reset(token)
