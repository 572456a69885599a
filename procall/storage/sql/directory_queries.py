"""The Directory's SQL statements, built with SQLAlchemy Core.

Kept apart from the stores so that a test can compile each of them for every
dialect procall supports (SQL Server included, which cannot run here). Every value
goes in as a bound parameter; ``LIKE`` patterns escape their wildcards (``%``,
``_``, and ``[`` for SQL Server) so searched text is always taken literally.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    false,
    func,
    or_,
    select,
)

from procall.directory.models import SearchField
from procall.directory.validation import normalize_key, phone_digits
from procall.storage.sql.tables import (
    delegation_scopes,
    delegations,
    group_members,
    groups,
    pickup_group_members,
    users,
)

__all__ = [
    "LIKE_ESCAPE",
    "USER_COLUMNS",
    "delegated_scopes",
    "group_member_ids",
    "groups_page",
    "like_pattern",
    "select_group",
    "select_groups",
    "shared_pickup_groups",
    "user_search_condition",
    "users_page",
]

LIKE_ESCAPE = "\\"

#: Every user column except the password hash, which only logins read.
USER_COLUMNS = tuple(column for column in users.c if column.name != "password_hash")


def like_pattern(text: str) -> str:
    """``%text%`` with the LIKE wildcards of every dialect escaped."""
    escaped = (
        text.replace(LIKE_ESCAPE, LIKE_ESCAPE * 2)
        .replace("%", LIKE_ESCAPE + "%")
        .replace("_", LIKE_ESCAPE + "_")
        .replace("[", LIKE_ESCAPE + "[")
    )
    return f"%{escaped}%"


def _contains(column: ColumnElement[str], text: str) -> ColumnElement[bool]:
    return column.like(like_pattern(text), escape=LIKE_ESCAPE)


def user_search_condition(text: str, field: SearchField) -> ColumnElement[bool]:
    """Users whose ``field`` contains ``text`` (case-insensitive; phone by its digits)."""
    key = normalize_key(text)
    digits = phone_digits(text)
    name = or_(_contains(users.c.username_key, key), _contains(users.c.display_name_key, key))
    mail = _contains(users.c.mail_key, key)
    phone = _contains(users.c.phone_key, digits) if digits else false()
    department = _contains(users.c.department_key, key)
    if field is SearchField.NAME:
        return name
    if field is SearchField.MAIL:
        return mail
    if field is SearchField.PHONE_NUMBER:
        return phone
    if field is SearchField.DEPARTMENT:
        return department
    return or_(name, mail, phone, department)


def users_page(
    *,
    after_key: str | None,
    limit: int,
    home_server_id: str = "",
    group_id: str = "",
    text: str = "",
    field: SearchField = SearchField.ALL,
) -> Select[*tuple[Any, ...]]:
    """Users by ``username_key`` after a keyset position, at most ``limit`` rows."""
    statement = select(*USER_COLUMNS)
    conditions: list[ColumnElement[bool]] = []
    if group_id:
        statement = statement.join(group_members, group_members.c.user_id == users.c.id)
        conditions.append(group_members.c.group_id == group_id)
    if home_server_id:
        conditions.append(users.c.home_server_id == home_server_id)
    if text:
        conditions.append(user_search_condition(text, field))
    if after_key is not None:
        conditions.append(users.c.username_key > after_key)
    if conditions:
        statement = statement.where(and_(*conditions))
    return statement.order_by(users.c.username_key).limit(limit)


def group_member_ids(user_ids: Sequence[str]) -> Select[str, str]:
    """``(user_id, group_id)`` of the memberships of these users, in a stable order."""
    return (
        select(group_members.c.user_id, group_members.c.group_id)
        .where(group_members.c.user_id.in_(user_ids))
        .order_by(group_members.c.user_id, group_members.c.group_id)
    )


def _member_count() -> ColumnElement[int]:
    return (
        select(func.count())
        .where(group_members.c.group_id == groups.c.id)
        .correlate(groups)
        .scalar_subquery()
        .label("member_count")
    )


def select_groups() -> Select[*tuple[Any, ...]]:
    """Groups with their member counts."""
    return select(groups.c.id, groups.c.name, groups.c.description, _member_count())


def select_group(group_id: str) -> Select[*tuple[Any, ...]]:
    """One group with its member count."""
    return select_groups().where(groups.c.id == group_id)


def groups_page(*, after_key: str | None, limit: int) -> Select[*tuple[Any, ...]]:
    """Groups by ``name_key`` after a keyset position."""
    statement = select_groups().add_columns(groups.c.name_key)
    if after_key is not None:
        statement = statement.where(groups.c.name_key > after_key)
    return statement.order_by(groups.c.name_key).limit(limit)


def delegated_scopes(actor: str, principal: str) -> Select[str]:
    """The scope names ``actor`` holds for ``principal``."""
    return (
        select(delegation_scopes.c.scope)
        .join(delegations, delegations.c.id == delegation_scopes.c.delegation_id)
        .where(
            delegations.c.principal_user_id == principal,
            delegations.c.delegate_user_id == actor,
        )
    )


def shared_pickup_groups(user_a: str, user_b: str) -> Select[int]:
    """How many pick-up groups both users are members of."""
    other = pickup_group_members.alias("other")
    return (
        select(func.count())
        .select_from(pickup_group_members)
        .join(other, other.c.pickup_group_id == pickup_group_members.c.pickup_group_id)
        .where(pickup_group_members.c.user_id == user_a, other.c.user_id == user_b)
    )
