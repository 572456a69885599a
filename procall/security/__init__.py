"""Security helpers shared by every server: files that hold secrets, and the keys of
the session tokens.

``procall.security.files`` creates secret files and private directories with the
right mode from the start, and refuses secret files that other users can read;
``procall.security.keys`` makes and loads the Ed25519 key pair of the session tokens.
"""

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
    "InsecureFileError",
    "KeyFileError",
    "generate_token_keys",
    "load_signing_key",
    "load_verify_keys",
    "private_dir",
    "private_file",
    "require_private",
    "write_private",
]
