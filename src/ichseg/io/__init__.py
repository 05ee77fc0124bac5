"""Reading CT volumes (NIfTI, DICOM) and writing masks in the input's own geometry."""

from ichseg.io.image import CTImage, case_name, load_image, save_image, save_mask

__all__ = ["CTImage", "build_dicom_seg", "case_name", "list_series", "load_dicom_series", "load_image",
           "save_image", "save_mask", "write_ct_series", "write_dicom_seg"]


def __getattr__(name: str):
    """DICOM support loads pydicom and highdicom only when asked for."""
    if name in ("list_series", "load_dicom_series", "write_ct_series"):
        from ichseg.io import dicom

        return getattr(dicom, name)
    if name in ("build_dicom_seg", "write_dicom_seg"):
        from ichseg.io import dicom_seg

        return getattr(dicom_seg, name)
    raise AttributeError(f"module 'ichseg.io' has no attribute {name!r}")
