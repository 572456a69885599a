"""Child processes that must never outlive their parent."""

from __future__ import annotations

import shutil
from collections.abc import Sequence

__all__ = ["dying_with_parent"]

_SETPRIV = shutil.which("setpriv")


def dying_with_parent(command: Sequence[str]) -> list[str]:
    """``command`` wrapped so that the child gets SIGTERM when its parent dies (Linux).

    ``procall up`` and the test suite start servers as children; should the parent
    be killed outright (SIGKILL), no server is left behind. util-linux ``setpriv
    --pdeathsig`` sets the signal and then execs the command, which keeps the
    setting. (A ``preexec_fn`` doing the same ``prctl`` crashed children now and
    then: code between fork and exec in a process with threads is not safe.)
    Without ``setpriv`` the command runs as is.
    """
    if _SETPRIV is None:
        return list(command)
    return [_SETPRIV, "--pdeathsig", "TERM", "--", *command]
