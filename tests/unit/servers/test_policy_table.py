"""Deny by default: every method of every service a procall server can serve has a policy,
and the table names no method that does not exist."""

from __future__ import annotations

import importlib
import pkgutil

from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2

import procall.api
import procall.mesh
from procall.servers.runtime.policy import ADMIN, POLICIES, USER, Roles, SessionRule, services


def _served_methods() -> set[str]:
    """``/package.Service/Method`` of every service in the generated descriptors."""
    files = [health_pb2.DESCRIPTOR, reflection_pb2.DESCRIPTOR]
    for package in (procall.api, procall.mesh):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if info.name.endswith("_service_pb2"):
                files.append(importlib.import_module(info.name).DESCRIPTOR)
    methods = set()
    for descriptor in files:
        for service in descriptor.services_by_name.values():
            methods |= {f"/{service.full_name}/{m.name}" for m in service.methods}
    return methods


def test_every_served_method_has_a_policy() -> None:
    served = _served_methods()
    assert len(served) > 80  # the walk found the services (not an empty set passing)
    missing = sorted(served - set(POLICIES))
    assert not missing, f"methods without a policy: {missing}"


def test_the_table_names_only_methods_that_exist() -> None:
    served = _served_methods() | {"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"}
    assert not sorted(set(POLICIES) - served)


def test_only_login_health_and_reflection_are_public() -> None:
    public = {name for name, policy in POLICIES.items() if policy.public}
    assert public == {
        "/procall.api.session.v1.SessionService/Login",
        "/grpc.health.v1.Health/Check",
        "/grpc.health.v1.Health/Watch",
        "/grpc.health.v1.Health/List",
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    }


def test_the_rules_the_issue_asks_for() -> None:
    directory = "/procall.api.directory.v1.DirectoryService/"
    assert POLICIES[directory + "Authenticate"].roles == {Roles.UCSERVER}
    assert POLICIES[directory + "Authenticate"].session is SessionRule.NONE
    for write in ("CreateUser", "DeleteUser", "CreateDelegation"):
        assert POLICIES[directory + write] == ADMIN | services(Roles.OPERATOR)
    # a UCServer moving users, or re-homing a dead server's user at login, assigns homes
    for write in ("SetHomeServer", "BatchSetHomeServers"):
        assert POLICIES[directory + write] == ADMIN | services(Roles.OPERATOR, Roles.UCSERVER)
    for own in ("SetPassword", "UpdateUser"):  # checked further inside: one's own only
        assert POLICIES[directory + own] == USER | services(Roles.OPERATOR)
    assert POLICIES[directory + "GetUser"].session is SessionRule.USER
    assert {Roles.UCSERVER, Roles.LOOKUP} <= POLICIES[directory + "GetUser"].roles
    for peer in ("Exchange", "MoveUsers", "AcceptSessions", "SetDraining"):
        assert POLICIES[f"/procall.mesh.peer.v1.PeerService/{peer}"].roles == {Roles.UCSERVER}
    assert POLICIES["/procall.api.admin.v1.AdminService/MoveUser"] == ADMIN
    assert POLICIES["/procall.api.chat.v1.ChatService/SendMessage"] == USER
    for media in ("CreateLeg", "GetLoad"):
        assert POLICIES[f"/procall.mesh.media.v1.MediaService/{media}"].roles == {Roles.UCSERVER}
