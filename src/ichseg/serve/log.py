"""The node's log: one JSON object per line, on stderr and in the workspace, without identifiers.

A hospital's logs are read by people who may not see patient data, so every UID is replaced by a
short keyed hash (:mod:`ichseg.serve.identifiers`: the same UID always gives the same hash within
a workspace, so a case can be followed through the log) unless the node runs with
``--keep-identifiers``. Names, dates and IDs are never logged.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

#: Fields that hold DICOM UIDs; their values are hashed.
UID_FIELDS = ("series", "study", "sop")
#: A DICOM UID inside a message (an error naming its series, say): digits in five or more parts.
_UID_IN_TEXT = re.compile(r"(?<![\d.])[0-9]+(?:\.[0-9]+){4,}(?![\d.])")


class EventLog:
    """Appends events to ``path`` and echoes them on ``stream``; safe to call from any thread.

    ``hash_uid`` names a UID in the log (the workspace's :class:`~ichseg.serve.identifiers.UidHasher`).
    """

    def __init__(self, path: Path, hash_uid: Callable[[str], str], keep_identifiers: bool = False,
                 stream: TextIO | None = sys.stderr) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.hash_uid = hash_uid
        self.keep_identifiers = keep_identifiers
        self._stream = stream
        self._lock = threading.Lock()

    def key(self, uid: str) -> str:
        """How a UID appears in the log."""
        return uid if self.keep_identifiers else self.hash_uid(uid)

    def redact(self, text: str) -> str:
        """``text`` with every UID in it replaced by its hash (unchanged with keep_identifiers)."""
        return text if self.keep_identifiers else _UID_IN_TEXT.sub(lambda m: self.hash_uid(m.group()), text)

    def event(self, name: str, **fields: Any) -> dict[str, Any]:
        """Log event ``name`` with ``fields`` (UID fields hashed, UIDs in texts too); return the record."""
        record: dict[str, Any] = {"time": round(time.time(), 3), "event": name}
        for key, value in fields.items():
            if isinstance(value, str):
                value = self.key(value) if key in UID_FIELDS else self.redact(value)
            record[key] = value
        line = json.dumps(record, default=str)
        with self._lock:
            with self.path.open("a", encoding="utf-8") as file:
                file.write(line + "\n")
            if self._stream is not None:
                print(line, file=self._stream, flush=True)
        return record
