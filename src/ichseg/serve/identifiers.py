"""Names for UIDs that do not give the UIDs away: HMAC-SHA256 under a key kept in the workspace.

A plain hash of a UID can be reversed by anyone who holds candidate UIDs (a PACS export, a
worklist): hash them all and compare. Keyed with a secret that never leaves the node's state
folder, the same UID still always gives the same name within a workspace, so a case can be
followed through the log, but the names of one workspace say nothing to whoever lacks its key,
and two workspaces name the same UID differently.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

#: The key's file in the node's state folder (32 random bytes, readable by its owner only).
KEY_FILE = "uid-hash.key"
KEY_BYTES = 32
#: Hex digits kept of a digest: 64 bits, enough to tell a hospital's series apart.
DIGITS = 16


def plain_uid_hash(uid: str) -> str:
    """The unkeyed digest earlier nodes named files and logged UIDs with (reading old state only)."""
    return hashlib.sha256(uid.encode()).hexdigest()[:DIGITS]


class UidHasher:
    """Turns UIDs into 16-hex-digit keyed digests; :meth:`open` reads or creates the key."""

    def __init__(self, key: bytes, created: bool = False) -> None:
        if len(key) < KEY_BYTES:
            raise ValueError(f"a UID key needs {KEY_BYTES} bytes, got {len(key)}")
        self._key = key
        #: True when :meth:`open` made the key just now (a new, or an older, workspace).
        self.created = created

    @classmethod
    def open(cls, folder: Path) -> UidHasher:
        """The hasher of the state folder ``folder``, creating its key (mode 0600) on first use.

        The key is written under a temporary name and linked into place, so that two processes
        starting together agree on one key and neither reads a half-written one.
        """
        path = folder / KEY_FILE
        if path.is_file():
            return cls(path.read_bytes())
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
        descriptor = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(secrets.token_bytes(KEY_BYTES))
        try:
            os.link(tmp, path)
            created = True
        except FileExistsError:
            created = False
        finally:
            tmp.unlink()
        return cls(path.read_bytes(), created=created)

    def __call__(self, uid: str) -> str:
        return hmac.new(self._key, uid.encode(), hashlib.sha256).hexdigest()[:DIGITS]
