"""Helpers for child processes that must never outlive their parent."""

from __future__ import annotations

import ctypes
import signal

__all__ = ["die_with_parent"]

_PR_SET_PDEATHSIG = 1
# resolved once in the parent: nothing but the prctl call may run between fork and exec
_PRCTL = getattr(ctypes.CDLL(None, use_errno=True), "prctl", None)


def die_with_parent() -> None:
    """``preexec_fn`` that makes the child get SIGTERM when its parent dies (Linux).

    ``procall up`` and the test suite start servers as children; should the
    parent be killed outright (SIGKILL), no server is left behind. Where there
    is no ``prctl`` this does nothing.
    """
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
