"""A DICOM node: CT studies in from the PACS, segmentation, key images and measurements back.

``config`` (options, addresses, timeouts), ``scp`` (the Storage SCP), ``store`` (instances on
disk, the queue of studies in SQLite), ``worker`` (chooses a quiet study's series by the series
rules and segments them), ``results`` and ``sr`` (the DICOM-SEG, Secondary Capture and TID 1500
report), ``sender`` (C-STORE with back-off, in its own thread, every wait bounded), ``status``,
``log`` (JSON lines without identifiers) and ``identifiers`` (the workspace's keyed UID hash),
``node`` (the main loop).
"""

from ichseg.serve.config import ServeOptions, parse_listen, parse_peer
from ichseg.serve.node import serve
from ichseg.serve.status import format_status, queue_status

__all__ = ["ServeOptions", "format_status", "parse_listen", "parse_peer", "queue_status", "serve"]
