"""Security helpers shared by every server: files that hold secrets, the keys of the
session tokens, and the certificates of the mesh.

``procall.security.files`` creates secret files and private directories with the
right mode from the start, and refuses secret files that other users can read;
``procall.security.keys`` makes and loads the Ed25519 key pair of the session tokens;
``procall.security.certs`` makes a private CA and one certificate per procall server
(``procall certs``, ``procall up``); servers and the operator's tools only read them.
"""

from procall.security.certs import (
    ROLES,
    CertificateAuthority,
    IssuedCertificate,
    ensure_ca,
    issue,
    parse_spiffe_id,
    spiffe_id,
)
from procall.security.files import (
    PRIVATE_DIR_MODE,
    PRIVATE_FILE_MODE,
    InsecureFileError,
    private_dir,
    private_file,
    require_private,
    write_private,
)
from procall.security.keys import (
    KeyFileError,
    generate_token_keys,
    load_signing_key,
    load_verify_keys,
)

__all__ = [
    "PRIVATE_DIR_MODE",
    "PRIVATE_FILE_MODE",
    "ROLES",
    "CertificateAuthority",
    "InsecureFileError",
    "IssuedCertificate",
    "KeyFileError",
    "ensure_ca",
    "generate_token_keys",
    "issue",
    "load_signing_key",
    "load_verify_keys",
    "parse_spiffe_id",
    "private_dir",
    "private_file",
    "require_private",
    "spiffe_id",
    "write_private",
]
