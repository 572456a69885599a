"""Security helpers shared by every server: files that hold secrets.

``procall.security.files`` creates secret files and private directories with the
right mode from the start, and refuses secret files that other users can read.
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

__all__ = [
    "PRIVATE_DIR_MODE",
    "PRIVATE_FILE_MODE",
    "InsecureFileError",
    "private_dir",
    "private_file",
    "require_private",
    "write_private",
]
