"""Reading CT volumes (NIfTI, DICOM) and writing masks in the input's own geometry."""

from ichseg.io.image import CTImage, case_name, load_image, save_image, save_mask

__all__ = ["CTImage", "case_name", "list_series", "load_dicom_series", "load_image", "save_image",
           "save_mask", "write_ct_series", "write_dicom_seg"]


def __getattr__(name: str):
    """DICOM support loads pydicom and highdicom only when asked for."""
    if name in ("list_series", "load_dicom_series", "write_ct_series"):
        from ichseg.io import dicom

        return getattr(dicom, name)
    if name == "write_dicom_seg":
        from ichseg.io.dicom_seg import write_dicom_seg

        return write_dicom_seg
    raise AttributeError(f"module 'ichseg.io' has no attribute {name!r}")
