"""A real Orthanc on free loopback ports, for the DICOM node's tests.

:func:`running_orthanc` writes a temporary configuration (storage in a temporary folder, no remote
access, no authentication, no plugins, one DICOM modality for the node under test), starts
Debian's ``Orthanc`` binary and waits for its REST API. :class:`Orthanc` wraps the few REST calls
the tests need. Tests skip when the binary is missing, except under ``CI=true``, where they fail.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ORTHANC_AET = "ORTHANC"
LOOPBACK = "127.0.0.1"


def require_binary(name: str) -> str:
    """The binary's path; skip the test when it is missing, fail under CI=true."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (Debian: apt-get install orthanc dicom3tools)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Orthanc:
    """A running Orthanc: its DICOM port and REST API."""

    http_port: int
    dicom_port: int
    log: Path

    @property
    def peer(self) -> str:
        """Its address as ``ichseg serve --send-to`` takes it."""
        return f"{ORTHANC_AET}@{LOOPBACK}:{self.dicom_port}"

    def request(self, method: str, path: str, body: bytes | dict | list | None = None,
                timeout: float = 60.0) -> Any:
        data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
        request = urllib.request.Request(f"http://{LOOPBACK}:{self.http_port}{path}", data=data, method=method)
        with urllib.request.urlopen(request, timeout=timeout) as response:
            payload = response.read()
        kind = response.headers.get("Content-Type", "")
        return json.loads(payload) if "json" in kind else payload

    def upload(self, files: list[Path]) -> str:
        """Upload DICOM files; return the Orthanc ID of their series."""
        series = {self.request("POST", "/instances", f.read_bytes())["ParentSeries"] for f in files}
        assert len(series) == 1, series
        return series.pop()

    def store_to(self, modality: str, resource: str) -> dict:
        """Ask Orthanc to C-STORE a resource (series, study, instance) to a configured modality."""
        return self.request("POST", f"/modalities/{modality}/store", {"Resources": [resource], "Synchronous": True})

    def series_by_modality(self, modality: str) -> list[dict]:
        return [s for s in self.request("GET", "/series?expand")
                if s["MainDicomTags"].get("Modality") == modality]

    def instance_files(self, series: dict) -> list[bytes]:
        return [self.request("GET", f"/instances/{i}/file") for i in series["Instances"]]


def _config(root: Path, http_port: int, dicom_port: int, modalities: dict[str, tuple[str, int]]) -> Path:
    config = {
        "Name": "ichseg-test", "StorageDirectory": str(root / "db"), "IndexDirectory": str(root / "db"),
        "HttpPort": http_port, "DicomPort": dicom_port, "DicomAet": ORTHANC_AET,
        "RemoteAccessAllowed": False, "AuthenticationEnabled": False, "Plugins": [],
        "DicomModalities": {name: [aet, LOOPBACK, port] for name, (aet, port) in modalities.items()},
        "DicomCheckCalledAet": False, "DicomScuTimeout": 30, "HttpTimeout": 60,
        "StorageCompression": False, "OverwriteInstances": True,
    }
    path = root / "orthanc.json"
    path.write_text(json.dumps(config, indent=2))
    return path


@contextmanager
def running_orthanc(root: Path, modalities: dict[str, tuple[str, int]], timeout: float = 30.0,
                    dicom_port: int | None = None) -> Iterator[Orthanc]:
    """Start Orthanc under ``root`` knowing ``modalities`` (name → (AE title, port)), on
    ``dicom_port`` or a free one; stop it after."""
    binary = require_binary("Orthanc")
    root.mkdir(parents=True, exist_ok=True)
    server = Orthanc(free_port(), dicom_port or free_port(), root / "orthanc.log")
    config = _config(root, server.http_port, server.dicom_port, modalities)
    with server.log.open("wb") as log:
        process = subprocess.Popen([binary, str(config)], cwd=root, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                server.request("GET", "/system", timeout=2)
                break
            except (urllib.error.URLError, ConnectionError):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"Orthanc did not start: {server.log.read_text()[-2000:]}") from None
                time.sleep(0.2)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
