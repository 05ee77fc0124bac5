"""PACS that misbehave, on loopback, for the DICOM node's sender tests.

- :class:`SilentListener`: accepts TCP connections, reads what arrives and never answers (a PACS
  that hangs, or a proxy in front of a dead one).
- :func:`full_backlog`: a port whose listener never accepts and whose queue is full, so Linux drops
  every further SYN, as a firewall that drops packets does: connecting hangs.
- :class:`RecordingSCP`: a real pynetdicom Storage SCP that records what it receives and, while
  ``hold`` is set, takes each C-STORE but answers only when released (a PACS stuck mid-transfer).
"""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Self

from pynetdicom import AE, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    Comprehensive3DSRStorage,
    SecondaryCaptureImageStorage,
    SegmentationStorage,
)

from orthanc import LOOPBACK

#: Bound on a loopback handshake (immediate, but the CI box is slow and shared).
HANDSHAKE_TIMEOUT_S = 30.0


@dataclass
class Connection:
    """One accepted connection: when it opened, and when the other side closed it (or None)."""

    opened: float
    closed: float | None = None


@dataclass
class SilentListener:
    """Accepts up to ``accept`` connections on ``port`` (0: a free one) and never writes a byte.

    After the last connection it would accept, the port is closed: later attempts are refused.
    Times are ``time.time()``, comparable with the node's log.
    """

    port: int = 0
    accept: int = 1_000_000
    connections: list[Connection] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._server = socket.create_server((LOOPBACK, self.port))
        self._server.settimeout(0.1)
        self.port = self._server.getsockname()[1]
        self._closing = threading.Event()
        self._held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closing.is_set() and len(self.connections) < self.accept:
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            record = Connection(time.time())
            self.connections.append(record)
            self._held.append(conn)
            threading.Thread(target=self._drain, args=(conn, record), daemon=True).start()
        self._server.close()

    @staticmethod
    def _drain(conn: socket.socket, record: Connection) -> None:
        try:
            while conn.recv(65536):
                pass
        except OSError:
            pass
        record.closed = time.time()
        conn.close()

    def close(self) -> None:
        """Stop accepting and hang up every held connection. Closing a socket whose reader blocks
        in ``recv`` would leave the connection open: shutting it down sends the FIN and wakes it."""
        self._closing.set()
        for conn in self._held:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # the other side hung up first
            conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


@contextmanager
def full_backlog() -> Iterator[int]:
    """A loopback port where connecting hangs: its listener's queue is full and never drained."""
    server = socket.create_server((LOOPBACK, 0), backlog=0)
    port = server.getsockname()[1]
    fillers = []
    for _ in range(3):  # more than the queue holds; the extra ones stay half-open
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex((LOOPBACK, port))
        fillers.append(filler)
    try:
        # The queue is full once a handshake has completed: that filler turns writable. The
        # others' SYNs are dropped, so they stay half-open and never do.
        _, connected, _ = select.select([], fillers, [], HANDSHAKE_TIMEOUT_S)
        if not any(filler.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0 for filler in connected):
            raise RuntimeError(f"no handshake with the listener completed within {HANDSHAKE_TIMEOUT_S:g} s")
        yield port
    finally:
        for filler in fillers:
            filler.close()
        server.close()


class RecordingSCP:
    """A Storage SCP for the node's result classes, as AE title ``PACS``; records SOP instance UIDs."""

    def __init__(self) -> None:
        self.received: list[str] = []
        self.hold = threading.Event()
        self._release = threading.Event()
        ae = AE(ae_title="PACS")
        for sop_class in (SegmentationStorage, SecondaryCaptureImageStorage, Comprehensive3DSRStorage):
            ae.add_supported_context(sop_class)
        self._server = ae.start_server((LOOPBACK, 0), block=False, evt_handlers=[(evt.EVT_C_STORE, self._on_store)])
        self.port = self._server.server_address[1]

    def _on_store(self, event: Any) -> int:
        if self.hold.is_set():
            self._release.wait(60)
        self.received.append(str(event.dataset.SOPInstanceUID))
        return 0x0000

    def close(self) -> None:
        self._release.set()
        self._server.shutdown()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
