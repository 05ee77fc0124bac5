"""Compressed transfer syntaxes read bit-equal: phantom series encoded losslessly with GDCM's
gdcmconv (JPEG lossless, JPEG-LS, JPEG 2000, RLE) and pydicom's JPEG-LS encoder, single-frame and
enhanced, give the HU of the uncompressed series."""

from __future__ import annotations

import subprocess
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.pixels import get_decoder
from pydicom.uid import JPEGLosslessSV1, JPEGLSLossless

from ichseg.errors import InputError
from ichseg.io.dicom import load_dicom_series, write_ct_series
from orthanc import require_binary
from phantoms import head_phantom

#: gdcmconv's option and the lossless transfer syntax it writes.
GDCMCONV = {
    "--jpeg": "1.2.840.10008.1.2.4.70",  # JPEG Lossless, first-order prediction
    "--jpegls": "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
    "--j2k": "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless Only
    "--rle": "1.2.840.10008.1.2.5",  # RLE Lossless
}


def gdcmconv(source: Path, folder: Path, option: str) -> Path:
    """Every file of ``source`` encoded with ``gdcmconv option`` into ``folder``."""
    binary = require_binary("gdcmconv")
    folder.mkdir(parents=True)
    for path in sorted(source.glob("*.dcm")):
        subprocess.run([binary, option, str(path), str(folder / path.name)], check=True, timeout=60)
        written = pydicom.dcmread(folder / path.name, stop_before_pixels=True)
        assert written.file_meta.TransferSyntaxUID == GDCMCONV[option]
    return folder


def enhanced(single_frame: Path, folder: Path) -> Path:
    datasets = [pydicom.dcmread(path) for path in sorted(single_frame.glob("*.dcm"))]
    folder.mkdir(parents=True)
    hd.legacy.LegacyConvertedEnhancedCTImage(
        datasets, series_instance_uid=hd.UID(), series_number=7, sop_instance_uid=hd.UID(),
        instance_number=1).save_as(folder / "enhanced.dcm", enforce_file_format=True)
    return folder


@pytest.fixture
def phantom_series(tmp_path):
    image = head_phantom()
    return image, write_ct_series(image, tmp_path / "plain")


@pytest.mark.parametrize("option", GDCMCONV)
def test_gdcmconv_encodings_read_as_the_uncompressed_series(option, phantom_series, tmp_path):
    image, plain = phantom_series
    assert np.array_equal(load_dicom_series(gdcmconv(plain, tmp_path / "series", option)).array, image.array)
    frames = gdcmconv(enhanced(plain, tmp_path / "enhanced"), tmp_path / "enhanced_encoded", option)
    assert np.array_equal(load_dicom_series(frames).array, image.array)


def test_pydicom_jpeg_ls_encoding_reads_as_the_uncompressed_series(phantom_series, tmp_path):
    pytest.importorskip("jpeg_ls", reason="pydicom encodes JPEG-LS with pyjpegls")
    image, plain = phantom_series
    for path in sorted(plain.glob("*.dcm")):
        ds = pydicom.dcmread(path)
        ds.compress(JPEGLSLossless)
        ds.save_as(path)
    assert np.array_equal(load_dicom_series(plain).array, image.array)


def test_an_enhanced_ct_with_rescales_per_frame_is_read_by_pydicom_or_refused(phantom_series, tmp_path):
    """GDCM applies one rescale to every frame: with a rescale per frame, only pydicom decodes."""
    image, plain = phantom_series
    third = sorted(plain.glob("*.dcm"))[2]
    ds = pydicom.dcmread(third)
    ds.PixelData = (ds.pixel_array + 200).astype("<i2").tobytes()
    ds.RescaleIntercept = "-1224"
    ds.save_as(third)
    encoded = gdcmconv(enhanced(plain, tmp_path / "enhanced"), tmp_path / "jpeg", "--jpeg")
    if get_decoder(JPEGLosslessSV1).is_available:
        assert np.array_equal(load_dicom_series(encoded).array, image.array)
    else:
        with pytest.raises(InputError, match="pixel data of file enhanced.dcm cannot be decoded"):
            load_dicom_series(encoded)
