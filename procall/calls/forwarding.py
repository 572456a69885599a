"""Call forwarding: each user's rules, who may change them, and where a call ends up ringing.

A user has at most one rule per condition (``ALWAYS``, ``BUSY``, ``NO_ANSWER``,
``OFFLINE``), each with a target user and an on/off switch. ``ForwardingService`` reads and
replaces them (one's own, or another's with the ``calls.forward`` delegation) and decides
where a new call rings (``route``).

Routing policy (what a caller and the users in a chain would expect):

* At each user the enabled rules are checked in a fixed order, whatever order they are
  stored in: ``ALWAYS``; then ``OFFLINE`` when the user has no client logged on; then
  ``BUSY`` when the user is on the phone. The first that applies moves the call on to its
  target, and the target's own rules apply in turn (bob -> carol -> dave).
* A chain never visits a user twice, and never comes back to the caller: ringing the
  caller for their own call, or going round in circles, helps nobody. When the next hop
  would do either, the chain stops and the call rings at the last user reached
  (``Route.loop_detected`` tells the call flow so). The call is not failed: a caller
  prefers reaching someone of the chain to an error.
* A chain takes at most ``MAX_HOPS`` forwards; the call rings at the user reached then.
* ``NO_ANSWER`` is not decided here: ``Route.no_answer`` hands the final target's rule
  back, and the call flow, after ringing for its timeout, routes again from the rule's
  target with ``forwarded_from`` set to the chain so far (so loop detection and the hop
  bound span the whole call). A ``NO_ANSWER`` rule that would go back into the chain (or to
  the caller) is not handed back.

When rules are set, a rule set that forwards unconditionally (``ALWAYS``) into a chain of
``ALWAYS`` rules that comes back to the user is refused (FAILED_PRECONDITION): every call
would go round that loop. Loops through conditional rules can only be known at call time.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from procall.errors import FailedPrecondition, FieldViolation, InvalidArgument, PermissionDenied
from procall.validation import check_id

__all__ = [
    "DEFAULT_NO_ANSWER_TIMEOUT",
    "MAX_HOPS",
    "MAX_NO_ANSWER_TIMEOUT",
    "MAX_RULES",
    "MIN_NO_ANSWER_TIMEOUT",
    "ForwardingCondition",
    "ForwardingDelegations",
    "ForwardingRule",
    "ForwardingService",
    "ForwardingStore",
    "ForwardingUsers",
    "NoAnswer",
    "Reachability",
    "ReachabilityOf",
    "Route",
    "check_rules",
]

#: How long a NO_ANSWER rule rings before forwarding when the client does not say (seconds).
DEFAULT_NO_ANSWER_TIMEOUT = 20.0
#: Shortest NO_ANSWER timeout (seconds): less gives nobody the time to pick up.
MIN_NO_ANSWER_TIMEOUT = 5.0
#: Longest NO_ANSWER timeout (seconds): callers hang up long before.
MAX_NO_ANSWER_TIMEOUT = 120.0
#: Rules per user (there are only four conditions; the bound keeps requests small).
MAX_RULES = 10
#: Forwards a call takes at most before it rings where it is.
MAX_HOPS = 5


class ForwardingCondition(enum.IntEnum):
    """When a rule applies; the values are those of ``procall.api.call.v1.ForwardingCondition``."""

    #: Not set (or a value this release does not know); refused in a rule.
    UNSPECIFIED = 0
    #: Every call.
    ALWAYS = 1
    #: When the user is already on the phone.
    BUSY = 2
    #: When the call is not answered within the rule's timeout.
    NO_ANSWER = 3
    #: When the user has no client logged on.
    OFFLINE = 4


@dataclass(frozen=True)
class ForwardingRule:
    """Send calls for a user to ``target_user_id`` under ``condition`` (when ``enabled``).

    ``no_answer_timeout`` (seconds) is how long a NO_ANSWER rule rings first; other
    conditions ignore it (it is stored as the default for them).
    """

    condition: ForwardingCondition
    target_user_id: str
    no_answer_timeout: float = DEFAULT_NO_ANSWER_TIMEOUT
    enabled: bool = True


@dataclass(frozen=True)
class Reachability:
    """What the call flow knows of a user when routing: logged on, and on the phone."""

    online: bool
    busy: bool


#: How ``route`` asks for a user's reachability (presence / call state, from the call flow).
ReachabilityOf = Callable[[str], Awaitable[Reachability]]


@dataclass(frozen=True)
class NoAnswer:
    """A NO_ANSWER rule to apply after ringing ``timeout_seconds`` without an answer."""

    target_user_id: str
    timeout_seconds: float


@dataclass(frozen=True)
class Route:
    """Where a call rings: ``target_user_id``, reached through ``forwarded_from``.

    ``forwarded_from`` lists the users whose rules forwarded the call, in order (the
    callee first; empty when the callee's rules did not apply). ``no_answer`` is the
    target's NO_ANSWER rule, if it has an enabled one leading out of the chain.
    ``loop_detected`` is true when the chain stopped because a rule led back into it (or
    to the caller), or because it reached ``MAX_HOPS``.
    """

    target_user_id: str
    forwarded_from: tuple[str, ...] = ()
    no_answer: NoAnswer | None = None
    loop_detected: bool = False


_SETTABLE = frozenset(
    (
        ForwardingCondition.ALWAYS,
        ForwardingCondition.BUSY,
        ForwardingCondition.NO_ANSWER,
        ForwardingCondition.OFFLINE,
    )
)


# -- ports -------------------------------------------------------------------------------------


class ForwardingStore(Protocol):
    """Users' forwarding rules (SQL); a user without rules has an empty list."""

    async def rules_of(self, user_id: str) -> list[ForwardingRule]:
        """The user's rules, in the order they were set."""
        ...

    async def replace(self, user_id: str, rules: Sequence[ForwardingRule]) -> None:
        """Replace all of the user's rules (an empty list removes them), atomically."""
        ...


class ForwardingDelegations(Protocol):
    """Whether the Directory lets one user set another's forwarding."""

    async def may_forward(self, actor_user_id: str, principal_user_id: str) -> bool:
        """True when ``actor`` holds the calls.forward delegation of ``principal``."""
        ...


class ForwardingUsers(Protocol):
    """Which users exist (the Directory); the same shape as chat's and presence's port."""

    async def unknown_users(self, user_ids: Sequence[str]) -> list[str]:
        """The ids among ``user_ids`` that name no user; ``Unavailable`` when it cannot say."""
        ...


# -- checks ------------------------------------------------------------------------------------


def check_rules(user_id: str, rules: Sequence[ForwardingRule]) -> list[ForwardingRule]:
    """The rules ``user_id`` asks for, checked and normalised (no store, no Directory).

    Raises ``InvalidArgument`` naming the field (``rules[2].target_user_id``) for: more than
    ``MAX_RULES`` rules, an unspecified condition, a condition twice, a missing or malformed
    target, a rule forwarding to the user themself, a NO_ANSWER timeout outside
    ``MIN_NO_ANSWER_TIMEOUT``..``MAX_NO_ANSWER_TIMEOUT``. Rules of other conditions get the
    default timeout, which they do not use.
    """
    if len(rules) > MAX_RULES:
        raise InvalidArgument.field("rules", f"at most {MAX_RULES} rules are allowed")
    checked: list[ForwardingRule] = []
    seen: dict[ForwardingCondition, int] = {}
    for index, rule in enumerate(rules):
        field = f"rules[{index}]"
        if rule.condition not in _SETTABLE:
            raise InvalidArgument.field(
                f"{field}.condition", "must be one of ALWAYS, BUSY, NO_ANSWER, OFFLINE"
            )
        condition = ForwardingCondition(rule.condition)
        if condition in seen:
            raise InvalidArgument.field(
                f"{field}.condition",
                f"{condition.name} is already the condition of rules[{seen[condition]}]",
            )
        seen[condition] = index
        target = check_id(rule.target_user_id, f"{field}.target_user_id")
        if target == user_id:
            raise InvalidArgument.field(
                f"{field}.target_user_id", "must not be the user whose calls are forwarded"
            )
        timeout = DEFAULT_NO_ANSWER_TIMEOUT
        if condition is ForwardingCondition.NO_ANSWER:
            timeout = float(rule.no_answer_timeout)
            # written so that NaN fails too
            if not MIN_NO_ANSWER_TIMEOUT <= timeout <= MAX_NO_ANSWER_TIMEOUT:
                raise InvalidArgument.field(
                    f"{field}.no_answer_timeout",
                    f"must be from {MIN_NO_ANSWER_TIMEOUT:g} to {MAX_NO_ANSWER_TIMEOUT:g} seconds",
                )
        checked.append(
            ForwardingRule(condition, target, no_answer_timeout=timeout, enabled=bool(rule.enabled))
        )
    return checked


def _enabled(rules: Sequence[ForwardingRule]) -> dict[ForwardingCondition, ForwardingRule]:
    """The first enabled rule of each condition."""
    found: dict[ForwardingCondition, ForwardingRule] = {}
    for rule in rules:
        if rule.enabled:
            found.setdefault(rule.condition, rule)
    return found


# -- use cases ---------------------------------------------------------------------------------


class ForwardingService:
    """Reading and setting forwarding rules, and routing calls with them."""

    def __init__(
        self,
        store: ForwardingStore,
        delegations: ForwardingDelegations,
        users: ForwardingUsers,
    ) -> None:
        self._store = store
        self._delegations = delegations
        self._users = users

    async def get(self, actor: str, user_id: str = "") -> list[ForwardingRule]:
        """The rules of ``user_id`` (the actor's own when empty), in the order they were set.

        Another user's rules need the ``calls.forward`` delegation (``PermissionDenied``).
        """
        user_id = await self._allowed(actor, user_id)
        return await self._store.rules_of(user_id)

    async def set(
        self, actor: str, user_id: str, rules: Sequence[ForwardingRule]
    ) -> list[ForwardingRule]:
        """Replace the rules of ``user_id`` (the actor's own when empty); returns them as stored.

        Raises ``PermissionDenied`` without the delegation, ``InvalidArgument`` for rules
        ``check_rules`` refuses or whose target names no user, and ``FailedPrecondition``
        (field violation on the rule's target) when an ALWAYS rule would close a loop of
        ALWAYS rules.
        """
        user_id = await self._allowed(actor, user_id)
        checked = check_rules(user_id, rules)
        targets = list(dict.fromkeys(rule.target_user_id for rule in checked))
        unknown = set(await self._users.unknown_users(targets)) if targets else set()
        for index, rule in enumerate(checked):
            if rule.target_user_id in unknown:
                raise InvalidArgument.field(
                    f"rules[{index}].target_user_id", f"no user {rule.target_user_id!r} exists"
                )
        await self._refuse_always_loop(user_id, checked)
        await self._store.replace(user_id, checked)
        return list(checked)

    async def route(
        self,
        callee: str,
        state_of: ReachabilityOf,
        *,
        caller: str | None = None,
        forwarded_from: Sequence[str] = (),
    ) -> Route:
        """Where a call for ``callee`` rings, following enabled rules (see the module doc).

        ``state_of`` is asked only about users with an enabled OFFLINE or BUSY rule.
        ``caller`` is never forwarded to. ``forwarded_from`` continues an earlier chain:
        the call flow passes ``route.forwarded_from + (route.target_user_id,)`` when it
        applies a NO_ANSWER rule, with ``callee`` set to that rule's target.
        """
        chain = list(forwarded_from)
        visited = set(chain)
        if caller:
            visited.add(caller)
        current = callee
        loop = False
        while True:
            visited.add(current)
            rules = _enabled(await self._store.rules_of(current))
            rule = await _applying(current, rules, state_of)
            if rule is None:
                break
            if rule.target_user_id in visited or len(chain) >= MAX_HOPS:
                loop = True
                break
            chain.append(current)
            current = rule.target_user_id
        no_answer = None
        found = rules.get(ForwardingCondition.NO_ANSWER)
        if found is not None and found.target_user_id not in visited and len(chain) < MAX_HOPS:
            no_answer = NoAnswer(found.target_user_id, found.no_answer_timeout)
        return Route(current, tuple(chain), no_answer, loop)

    async def _allowed(self, actor: str, user_id: str) -> str:
        """The user whose rules are meant, once the actor may touch them."""
        user_id = check_id(user_id or actor, "user_id")
        if user_id != actor and not await self._delegations.may_forward(actor, user_id):
            raise PermissionDenied(
                f"no calls.forward delegation for user {user_id!r}",
                metadata={"user_id": user_id, "scope": "calls.forward"},
            )
        return user_id

    async def _refuse_always_loop(self, user_id: str, rules: Sequence[ForwardingRule]) -> None:
        """Refuse an enabled ALWAYS rule whose target's ALWAYS chain comes back to the user."""
        for index, rule in enumerate(rules):
            if not (rule.enabled and rule.condition is ForwardingCondition.ALWAYS):
                continue
            chain = [user_id]
            current = rule.target_user_id
            while current not in chain and len(chain) <= MAX_HOPS:
                chain.append(current)
                always = _enabled(await self._store.rules_of(current)).get(
                    ForwardingCondition.ALWAYS
                )
                if always is None:
                    break
                current = always.target_user_id
            if current != user_id:
                continue
            path = " -> ".join([*chain, user_id])
            field = f"rules[{index}].target_user_id"
            description = f"forwarding always would loop: {path}"
            raise FailedPrecondition(
                f"{field}: {description}",
                metadata={"user_id": user_id, "loop": path},
                violations=[FieldViolation(field, description)],
            )


async def _applying(
    user_id: str, rules: dict[ForwardingCondition, ForwardingRule], state_of: ReachabilityOf
) -> ForwardingRule | None:
    """The enabled rule of ``user_id`` that moves a new call on, if any."""
    always = rules.get(ForwardingCondition.ALWAYS)
    if always is not None:
        return always
    offline = rules.get(ForwardingCondition.OFFLINE)
    busy = rules.get(ForwardingCondition.BUSY)
    if offline is None and busy is None:
        return None
    state = await state_of(user_id)
    if offline is not None and not state.online:
        return offline
    if busy is not None and state.busy:
        return busy
    return None
