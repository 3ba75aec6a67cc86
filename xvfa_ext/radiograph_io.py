"""Reading radiographs: PNG, JPEG and TIFF through OpenCV, DICOM through pydicom, with clear errors.

DICOM is recognised by content (the ``DICM`` mark after the preamble), so extensionless PACS
exports are read too; compressed transfer syntaxes decode through pydicom's pixel handlers where
installed (``pip install xvfa_ext[dicom]``: pylibjpeg with its JPEG, JPEG-LS and JPEG 2000 plugins).
"""

import glob
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

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


UID_FIELDS = {"study_uid": "StudyInstanceUID", "series_uid": "SeriesInstanceUID", "sop_uid": "SOPInstanceUID"}


@dataclass
class Film:
    """One radiograph as read: an 8-bit grayscale ``image`` (H, W); the pixel spacing (row, column)
    in mm, the patient id and the study, series and SOP instance UIDs where the file says so (DICOM)."""

    path: Path
    image: np.ndarray
    pixel_spacing: Optional[Tuple[float, float]] = None
    patient_id: Optional[str] = None
    uids: Dict[str, str] = field(default_factory=dict)


def _read_dicom(path: Path) -> Film:
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    try:
        ds = pydicom.dcmread(str(path))
    except (InvalidDicomError, AttributeError, ValueError, RuntimeError, OSError) as exc:
        raise ValueError(f"{path}: not a readable DICOM image ({exc})") from exc
    try:
        pixels = ds.pixel_array
    except (AttributeError, ValueError, RuntimeError, OSError) as exc:
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if syntax is not None and syntax.is_compressed:
            raise ValueError(f"{path}: its pixels are compressed as {syntax.name} and cannot be decoded here ({reason}); "
                             "pip install xvfa_ext[dicom] adds pydicom's pylibjpeg decoders") from exc
        raise ValueError(f"{path}: not a readable DICOM image ({reason})") from exc
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
    uids = {key: str(ds.get(tag)) for key, tag in UID_FIELDS.items() if ds.get(tag)}
    return Film(path, image, spacing, str(getattr(ds, "PatientID", "") or "") or None, uids)


def read_radiograph(path) -> Tuple[np.ndarray, Optional[Tuple[float, float]], Optional[str]]:
    """``(image, pixel_spacing, patient_id)`` of :func:`read_film`."""
    film = read_film(path)
    return film.image, film.pixel_spacing, film.patient_id


def read_film(path) -> Film:
    """The :class:`Film` in ``path`` (PNG, JPEG, TIFF or DICOM); ValueError naming the file otherwise."""
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
        return Film(path, pixels)
    return Film(path, _to_uint8(pixels, path))


def _dicomdir_images(path: Path) -> List[Path]:
    """The image files a DICOMDIR lists (pydicom's FileSet), in its order."""
    from pydicom.errors import InvalidDicomError
    from pydicom.fileset import FileSet

    try:
        fileset = FileSet(str(path))
    except (InvalidDicomError, ValueError, AttributeError, KeyError, OSError) as exc:
        raise ValueError(f"{path}: not a readable DICOMDIR ({exc})") from None
    return [Path(instance.path) for instance in fileset if getattr(instance, "DirectoryRecordType", "IMAGE") == "IMAGE"]


def is_dicomdir(path: Path) -> bool:
    return path.name.upper() == "DICOMDIR" and is_dicom(path)


def find_radiographs(patterns) -> Tuple[List[Path], List[str]]:
    """The radiographs named by files, folders (searched recursively) and globs, once each in the
    order given, and the names that matched nothing.

    In a folder, a file is kept by its suffix (PNG, JPEG, TIFF) or, whatever its name, by DICOM
    content; a DICOMDIR (named or found) stands for the images it lists.
    """
    files: List[Path] = []
    missing: List[str] = []

    def add(path: Path, explicit: bool) -> None:
        if is_dicomdir(path):
            files.extend(_dicomdir_images(path))
        elif explicit or path.suffix.lower() in IMAGE_SUFFIXES or is_dicom(path):
            files.append(path)

    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            for p in sorted(q for q in path.rglob("*") if q.is_file() and not q.name.startswith(".")):
                add(p, explicit=False)
        elif path.is_file():
            add(path, explicit=True)
        else:
            matches = sorted(Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
            for p in matches:
                add(p, explicit=False)
            if not matches:
                missing.append(pattern)
    seen, unique = set(), []
    for f in files:
        key = f.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique, missing
