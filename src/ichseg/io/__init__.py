"""Reading CT volumes (NIfTI, DICOM) and writing masks in the input's own geometry."""

from ichseg.io.image import CTImage, case_name, load_image, save_image, save_mask

__all__ = ["CTImage", "case_name", "load_image", "save_image", "save_mask"]
