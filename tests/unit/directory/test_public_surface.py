"""Pins the public names of the Directory's packages, so changes to them are deliberate."""

from __future__ import annotations

import importlib

import pytest

SURFACE = {
    "procall.directory": {
        "USER_MUTABLE_FIELDS",
        "Account",
        "Authenticator",
        "BackendInfo",
        "BackendKind",
        "CredentialStore",
        "Delegation",
        "DelegationScope",
        "DelegationStore",
        "Delegations",
        "Directory",
        "Group",
        "HashParameters",
        "HomeServerAssignment",
        "HomeServerStore",
        "LoginThrottle",
        "NewDelegation",
        "NewGroup",
        "NewPickupGroup",
        "NewUser",
        "Page",
        "PasswordAuthenticator",
        "PasswordHasher",
        "PasswordPolicy",
        "PickupGroup",
        "SearchField",
        "User",
        "UserChanges",
        "UserQuery",
        "UserReader",
        "UserWriter",
    },
    "procall.storage.ldap": {
        "BACKEND_NAME",
        "DEFAULT_ATTRIBUTES",
        "AttributeMap",
        "HomeServerOverrides",
        "LdapConfig",
        "LdapConfigError",
        "LdapGateway",
        "LdapUserDirectory",
    },
    "procall.storage.sql.engine": {
        "SqlConfigError",
        "SqlDatabase",
        "create_engine",
        "describe_url",
        "is_unavailable_error",
    },
    "procall.storage.sql.migrate": {
        "MIGRATIONS_DIR",
        "alembic_config",
        "current_revision",
        "head_revision",
        "load_all_tables",
        "migration_sql",
        "upgrade_to_head",
    },
    "procall.servers.directory.root": {"build_directory", "hash_parameters"},
    "procall.servers.directory.servicer": {
        "SELF_SERVICE_FIELDS",
        "DirectoryServicer",
        "phone_book_entry",
        "user_to_pb",
    },
    "procall.admin": {"add_admin_parser"},
    "procall.launch.demo": {
        "DEMO_CONTACTS",
        "DEMO_USERS",
        "DemoUser",
        "seed_demo_contacts",
        "seed_demo_directory",
    },
}


@pytest.mark.parametrize("module", sorted(SURFACE))
def test_public_names_are_pinned(module: str) -> None:
    loaded = importlib.import_module(module)
    assert set(loaded.__all__) == SURFACE[module]
    for name in loaded.__all__:
        assert hasattr(loaded, name), name


def test_domain_imports_no_transport_or_storage() -> None:
    import sys

    for name in list(sys.modules):
        if name.startswith("procall.directory"):
            module = sys.modules[name]
            source = open(module.__file__ or "", encoding="utf-8").read()  # noqa: SIM115
            for forbidden in ("import grpc", "sqlalchemy", "ldap3", "from procall.storage"):
                assert forbidden not in source, (name, forbidden)
