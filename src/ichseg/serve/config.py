"""What a DICOM node is told at start: who it is, whom it answers, how patient it is.

Addresses are written as DICOM people write them: ``AE_TITLE@PORT`` for the node itself and
``AE_TITLE@HOST:PORT`` for the PACS that receives the results. Parsing happens here, before
anything heavy loads, so that a typo is one line on stderr.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ichseg.errors import InputError

if TYPE_CHECKING:  # the rules module loads numpy; the command line reads this module at start
    from ichseg.io.series_selection import SeriesRules

#: An application entity title: 1-16 printable ASCII characters, no backslash, not all spaces.
_AE_TITLE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")
#: Default quiet period: a study none of whose series receives anything for this long is complete.
DEFAULT_QUIET_SECONDS = 30.0


@dataclass(frozen=True)
class Peer:
    """A DICOM application entity: its title, and where it listens."""

    ae_title: str
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


def ae_title(text: str) -> str:
    """A checked AE title (the characters DICOM allows, at most 16)."""
    if not _AE_TITLE.match(text) or not text.strip():
        raise InputError(f"'{text}' is not a DICOM AE title (1-16 ASCII characters, no backslash)")
    return text.strip()


def _port(text: str, where: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise InputError(f"'{where}': port must be a number from 1 to 65535")
    return int(text)


def parse_listen(text: str) -> tuple[str, int]:
    """``AE_TITLE@PORT`` → (title, port)."""
    title, at, port = text.rpartition("@")
    if not at:
        raise InputError(f"'{text}': expected AE_TITLE@PORT, e.g. ICHSEG@11112")
    return ae_title(title), _port(port, text)


def parse_peer(text: str) -> Peer:
    """``AE_TITLE@HOST:PORT`` → :class:`Peer`."""
    title, at, address = text.rpartition("@")
    host, colon, port = address.rpartition(":")
    if not at or not colon or not host:
        raise InputError(f"'{text}': expected AE_TITLE@HOST:PORT, e.g. ORTHANC@127.0.0.1:4242")
    return Peer(ae_title(title), host, _port(port, text))


@dataclass(frozen=True)
class Retry:
    """Back-off for results the PACS did not take: ``first`` seconds, doubling up to ``longest``."""

    first: float = 5.0
    longest: float = 600.0

    def delay(self, attempts: int) -> float:
        """Seconds to wait after ``attempts`` failed sends (attempts ≥ 1)."""
        return min(self.longest, self.first * 2 ** max(0, attempts - 1))


@dataclass(frozen=True)
class Timeouts:
    """How long the node waits on the PACS results go to, in seconds, before it gives up an attempt.

    ``connect``: the TCP connection (a PACS behind a firewall that drops packets); ``association``
    (ACSE): the answer to an association request (a PACS that accepts the connection and says
    nothing); ``dimse``: the answer to each C-STORE; ``network``: any read or write on an open
    connection making no progress (a PACS that stops reading midway).
    """

    connect: float = 10.0
    association: float = 30.0
    dimse: float = 60.0
    network: float = 60.0

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if not value > 0:
                raise InputError(f"the {name} timeout must be a positive number of seconds, got {value}")


@dataclass(frozen=True)
class ServeOptions:
    """Everything ``ichseg serve`` needs; see :func:`ichseg.serve.node.serve`."""

    model: Path
    ae_title: str
    port: int
    send_to: Peer
    state_dir: Path
    allow_ae: tuple[str, ...] = ()
    quiet_seconds: float = DEFAULT_QUIET_SECONDS
    keep_identifiers: bool = False
    device: str = "auto"
    mirroring: bool = True
    host: str = "0.0.0.0"
    retry: Retry = field(default_factory=Retry)
    timeouts: Timeouts = field(default_factory=Timeouts)
    #: The rules that choose a study's series (:mod:`ichseg.io.series_selection`; None: ichseg's
    #: default), and whether to segment every eligible series instead of the best one.
    series_rules: SeriesRules | None = None
    all_series: bool = False
    #: How often the node looks for finished series and results to send, in seconds.
    poll_seconds: float = 0.5

    @property
    def accepted_callers(self) -> tuple[str, ...]:
        """The calling AE titles accepted: ``allow_ae`` and the PACS results go to."""
        return tuple(dict.fromkeys((*self.allow_ae, self.send_to.ae_title)))
