"""A DICOM node: CT series in from the PACS, segmentation, key images and measurements back.

``config`` (options and addresses), ``scp`` (the Storage SCP), ``store`` (instances on disk, the
queue in SQLite), ``worker`` (segments a finished series), ``results`` and ``sr`` (the DICOM-SEG,
Secondary Capture and TID 1500 report), ``sender`` (C-STORE with back-off), ``status`` and
``log`` (JSON lines without identifiers), ``node`` (the main loop).
"""

from ichseg.serve.config import ServeOptions, parse_listen, parse_peer
from ichseg.serve.node import serve
from ichseg.serve.status import format_status, queue_status

__all__ = ["ServeOptions", "format_status", "parse_listen", "parse_peer", "queue_status", "serve"]
