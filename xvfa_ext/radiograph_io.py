"""Reading radiographs: PNG, JPEG and TIFF through OpenCV, DICOM through pydicom, with clear errors."""

from pathlib import Path
from typing import Optional, Tuple

import cv2
import numpy as np

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff"}
DICOM_SUFFIXES = {".dcm", ".dicom"}


def is_dicom(path: Path) -> bool:
    """By suffix, or by the 'DICM' marker that DICOM files carry after their 128-byte preamble."""
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    try:
        with open(path, "rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


def _to_uint8(pixels: np.ndarray, path: Path) -> np.ndarray:
    pixels = np.asarray(pixels, dtype=np.float64)
    if pixels.size == 0 or 0 in pixels.shape[:2]:
        raise ValueError(f"{path}: the image is empty")
    if not np.isfinite(pixels).all():
        raise ValueError(f"{path}: the image holds non-finite values")
    low, high = pixels.min(), pixels.max()
    if high <= low:
        raise ValueError(f"{path}: the image is blank (every pixel is {low:g})")
    return np.round((pixels - low) / (high - low) * 255).astype(np.uint8)


def _read_dicom(path: Path) -> Tuple[np.ndarray, Optional[Tuple[float, float]], Optional[str]]:
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    try:
        ds = pydicom.dcmread(str(path))
        pixels = ds.pixel_array
    except (InvalidDicomError, AttributeError, ValueError, RuntimeError, OSError) as exc:
        raise ValueError(f"{path}: not a readable DICOM image ({exc})") from exc
    if pixels.ndim == 3 and pixels.shape[-1] in (3, 4):
        pixels = pixels[..., :3].mean(-1)
    elif pixels.ndim != 2:
        raise ValueError(f"{path}: expected one 2D radiograph, got pixel data shaped {pixels.shape}")
    # Rescale slope and intercept, then the VOI LUT or window centre and width, as a viewer would.
    pixels = apply_voi_lut(apply_modality_lut(pixels, ds), ds)
    image = _to_uint8(pixels, path)
    if getattr(ds, "PhotometricInterpretation", "") == "MONOCHROME1":
        image = 255 - image  # MONOCHROME1 shows low values bright
    spacing = getattr(ds, "PixelSpacing", None) or getattr(ds, "ImagerPixelSpacing", None)
    spacing = (float(spacing[0]), float(spacing[1])) if spacing else None
    return image, spacing, str(getattr(ds, "PatientID", "") or "") or None


def read_radiograph(path) -> Tuple[np.ndarray, Optional[Tuple[float, float]], Optional[str]]:
    """``(image, pixel_spacing, patient_id)``: an 8-bit grayscale image; the spacing (row, column)
    in mm and the patient id where the file says so (DICOM), else None."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    if is_dicom(path):
        return _read_dicom(path)
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise ValueError(f"{path}: unsupported file type (PNG, JPEG, TIFF or DICOM)")
    pixels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if pixels is None:
        raise ValueError(f"{path}: cannot decode the image (corrupt or not an image)")
    if pixels.ndim == 3:
        pixels = cv2.cvtColor(np.ascontiguousarray(pixels[..., :3]), cv2.COLOR_BGR2GRAY)
    if pixels.dtype == np.uint8:
        if pixels.size == 0:
            raise ValueError(f"{path}: the image is empty")
        return pixels, None, None
    return _to_uint8(pixels, path), None, None
