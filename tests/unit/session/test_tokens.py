"""Session tokens: EdDSA JWTs any server verifies with the public key, refused when forged,
swapped, downgraded, expired or meant for another audience; verifiers cannot mint them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from procall.errors import Unauthenticated
from procall.security.keys import generate_token_keys, load_signing_key, load_verify_keys
from procall.session.tokens import TokenSigner, TokenVerifier, key_id


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


KEY = Ed25519PrivateKey.generate()


def _issue(signer: TokenSigner) -> str:
    token, _ = signer.issue(
        session_id="s1", user_id="u1", username="alice", home_server_id="uc-1", admin=False
    )
    return token


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _parts(token: str) -> tuple[dict[str, object], dict[str, object]]:
    header, payload, _ = token.split(".")
    decode = lambda part: json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))  # noqa: E731
    return decode(header), decode(payload)


def _refused(verifier: TokenVerifier, token: str, reason: str = "BAD_CREDENTIALS") -> None:
    with pytest.raises(Unauthenticated) as err:
        verifier.verify(token)
    assert err.value.reason == reason


def test_token_from_the_signer_is_accepted_with_the_public_key_only() -> None:
    clock = Clock()
    token = _issue(TokenSigner(KEY, 60, clock=clock))
    claims = TokenVerifier([KEY.public_key()], clock=clock).verify(token)
    assert (claims.user_id, claims.username, claims.home_server_id) == ("u1", "alice", "uc-1")
    assert (claims.session_id, claims.admin) == ("s1", False)
    header, payload = _parts(token)
    assert header == {"alg": "EdDSA", "kid": key_id(KEY.public_key()), "typ": "JWT"}
    assert {"iss", "aud", "sub", "jti", "iat", "nbf", "exp"} <= set(payload)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),
        lambda t: "x" + t,
        lambda t: t.rsplit(".", 1)[0],
        lambda t: "",
        lambda t: "not-a-token",
    ],
)
def test_forged_or_garbled_token_is_refused(tamper: object) -> None:
    clock = Clock()
    token = _issue(TokenSigner(KEY, 60, clock=clock))
    _refused(TokenVerifier([KEY.public_key()], clock=clock), tamper(token))  # type: ignore[operator]


def test_a_payload_changed_to_admin_is_refused() -> None:
    clock = Clock()
    header, payload, signature = _issue(TokenSigner(KEY, 60, clock=clock)).split(".")
    claims = _parts(f"{header}.{payload}.")[1] | {"adm": True}
    forged = f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"
    _refused(TokenVerifier([KEY.public_key()], clock=clock), forged)


def test_token_signed_with_another_key_is_refused_even_under_the_right_kid() -> None:
    clock = Clock()
    other = Ed25519PrivateKey.generate()
    verifier = TokenVerifier([KEY.public_key()], clock=clock)
    _refused(verifier, _issue(TokenSigner(other, 60, clock=clock)))  # unknown kid
    payload = _parts(_issue(TokenSigner(KEY, 60, clock=clock)))[1]
    swapped = jwt.encode(
        payload, other, algorithm="EdDSA", headers={"kid": key_id(KEY.public_key())}
    )
    _refused(verifier, swapped)


def test_alg_none_is_refused() -> None:
    clock = Clock()
    payload = _parts(_issue(TokenSigner(KEY, 60, clock=clock)))[1]
    header = {"alg": "none", "kid": key_id(KEY.public_key())}
    token = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}."
    _refused(TokenVerifier([KEY.public_key()], clock=clock), token)


def test_hs256_signed_with_the_public_key_is_refused() -> None:
    clock = Clock()
    payload = _parts(_issue(TokenSigner(KEY, 60, clock=clock)))[1] | {"adm": True}
    public_pem = KEY.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    header = {"alg": "HS256", "typ": "JWT", "kid": key_id(KEY.public_key())}
    body = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"
    mac = hmac.new(public_pem, body.encode(), hashlib.sha256).digest()
    _refused(TokenVerifier([KEY.public_key()], clock=clock), f"{body}.{_b64(mac)}")


def test_wrong_audience_or_issuer_is_refused() -> None:
    clock = Clock()
    verifier = TokenVerifier([KEY.public_key()], clock=clock)
    _refused(verifier, _issue(TokenSigner(KEY, 60, clock=clock, audience="another-system")))
    _refused(verifier, _issue(TokenSigner(KEY, 60, clock=clock, issuer="someone-else")))


def test_a_token_without_jti_is_refused() -> None:
    clock = Clock()
    payload = _parts(_issue(TokenSigner(KEY, 60, clock=clock)))[1]
    del payload["jti"]
    token = jwt.encode(payload, KEY, algorithm="EdDSA", headers={"kid": key_id(KEY.public_key())})
    _refused(TokenVerifier([KEY.public_key()], clock=clock), token)


def test_expired_token_says_so_and_refresh_extends() -> None:
    clock = Clock()
    signer = TokenSigner(KEY, 60, clock=clock)
    token = _issue(signer)
    clock.now += 59
    fresh, claims = signer.refresh(signer.verify(token))
    clock.now += 2
    _refused(signer.verifier, token, "TOKEN_EXPIRED")
    # a verifier that never saw it (no cached claims) says the same
    _refused(TokenVerifier([KEY.public_key()], clock=clock), token, "TOKEN_EXPIRED")
    assert signer.verify(fresh).session_id == claims.session_id == "s1"


def test_a_token_from_the_future_is_refused() -> None:
    clock = Clock()
    token = _issue(TokenSigner(KEY, 60, clock=clock))
    clock.now -= 30  # the verifier's clock is 30 s behind the issuer's
    _refused(TokenVerifier([KEY.public_key()], clock=clock), token)


def test_a_key_set_accepts_the_old_and_the_new_key() -> None:
    clock = Clock()
    new = Ed25519PrivateKey.generate()
    verifier = TokenVerifier([KEY.public_key(), new.public_key()], clock=clock)
    assert verifier.verify(_issue(TokenSigner(KEY, 60, clock=clock))).user_id == "u1"
    assert verifier.verify(_issue(TokenSigner(new, 60, clock=clock))).user_id == "u1"


def test_key_files_are_made_once_private_0600_and_load(tmp_path: Path) -> None:
    private, public = generate_token_keys(tmp_path / "keys")
    assert private.stat().st_mode & 0o777 == 0o600
    assert generate_token_keys(tmp_path / "keys") == (private, public)
    clock = Clock()
    signer = TokenSigner(load_signing_key(private), 60, clock=clock)
    verifier = TokenVerifier(load_verify_keys(public), clock=clock)
    assert verifier.verify(_issue(signer)).username == "alice"
    # the public file holds no private key: a verifier cannot mint
    assert b"PRIVATE" not in public.read_bytes()
