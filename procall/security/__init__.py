"""Security helpers shared by every server: files that hold secrets, and the certificates
of the mesh.

``procall.security.files`` creates secret files and private directories with the
right mode from the start, and refuses secret files that other users can read.
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

__all__ = [
    "PRIVATE_DIR_MODE",
    "PRIVATE_FILE_MODE",
    "ROLES",
    "CertificateAuthority",
    "InsecureFileError",
    "IssuedCertificate",
    "ensure_ca",
    "issue",
    "parse_spiffe_id",
    "private_dir",
    "private_file",
    "require_private",
    "spiffe_id",
    "write_private",
]
