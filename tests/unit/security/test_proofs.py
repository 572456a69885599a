"""Plain-mode proofs: valid once, for one server, one method, within the clock window."""

from __future__ import annotations

import time

from procall.servers.runtime.auth import ServiceIdentity
from procall.servers.runtime.identity import ProofSigner, ServiceAuthenticator, role_target

METHOD = "/procall.mesh.peer.v1.PeerService/Exchange"


def _receiver(role: str = "ucserver", server_id: str = "uc-1") -> ServiceAuthenticator:
    return ServiceAuthenticator(
        role=role, server_id=server_id, tls=False, credential="shared", window=30
    )


def test_a_proof_is_good_once() -> None:
    receiver = _receiver()
    proof = ProofSigner("shared", "ucserver", "uc-2").proof("uc-1", METHOD)
    assert receiver.check_proof(proof, METHOD) == ServiceIdentity("ucserver", "uc-2")
    assert receiver.check_proof(proof, METHOD) is None


def test_a_proof_for_another_server_method_time_or_secret_is_refused() -> None:
    receiver = _receiver()
    signer = ProofSigner("shared", "ucserver", "uc-2")
    now = time.time()
    assert receiver.check_proof(signer.proof("uc-fake", METHOD), METHOD) is None
    assert receiver.check_proof(signer.proof("uc-1", "/x.Y/Z"), METHOD) is None
    assert receiver.check_proof(signer.proof("uc-1", METHOD, now=now - 60), METHOD) is None
    assert receiver.check_proof(signer.proof("uc-1", METHOD, now=now + 60), METHOD) is None
    assert receiver.check_proof(ProofSigner("other", "ucserver", "uc-2").proof("uc-1", METHOD),
                                METHOD) is None  # fmt: skip
    tampered = signer.proof("uc-1", METHOD).replace(";uc-2;", ";uc-3;")
    assert receiver.check_proof(tampered, METHOD) is None
    assert receiver.check_proof("garbage", METHOD) is None


def test_a_ucserver_takes_no_proof_meant_for_a_role() -> None:
    signer = ProofSigner("shared", "ucserver", "uc-2")
    assert _receiver().check_proof(signer.proof(role_target("ucserver"), METHOD), METHOD) is None
    lookup = _receiver("lookup", "lookup-1")
    assert lookup.check_proof(signer.proof(role_target("lookup"), METHOD), METHOD) is not None


def test_seen_nonces_are_forgotten_only_when_their_proofs_are_too_old() -> None:
    receiver = _receiver()
    signer = ProofSigner("shared", "ucserver", "uc-2")
    start = time.time()
    proof = signer.proof("uc-1", METHOD, now=start)
    assert receiver.check_proof(proof, METHOD, now=start) is not None
    assert receiver.check_proof(proof, METHOD, now=start + 29) is None  # replay in the window
    # long after, other proofs still work, and the old one is refused for its age
    later = signer.proof("uc-1", METHOD, now=start + 100)
    assert receiver.check_proof(later, METHOD, now=start + 100) is not None
    assert receiver.check_proof(proof, METHOD, now=start + 100) is None
