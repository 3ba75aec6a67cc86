import cv2
import numpy as np
import pytest

from synthetic_dicom import write_dicom
from xvfa_ext.radiograph_io import read_radiograph
from xvfa_ext.synthetic import SyntheticConfig, generate_image, image_seed


@pytest.fixture(scope="module")
def image():
    return generate_image(image_seed(4, 0), SyntheticConfig(height=160, width=128))[0]


def test_dicom_is_inverted_rescaled_and_windowed(tmp_path, image):
    path = tmp_path / "scan.dcm"
    write_dicom(path, image)
    gray, spacing, patient = read_radiograph(path)
    assert gray.dtype == np.uint8 and np.array_equal(gray, image)
    assert spacing == (0.3, 0.25) and patient == "P0042"
    # Found by the DICM marker too, without a suffix.
    path.rename(tmp_path / "scan")
    assert np.array_equal(read_radiograph(tmp_path / "scan")[0], image)


def test_png_jpeg_tiff_and_16_bit(tmp_path, image):
    for name in ("a.png", "a.jpg", "a.tif"):
        cv2.imwrite(str(tmp_path / name), image)
        gray, spacing, _ = read_radiograph(tmp_path / name)
        assert gray.shape == image.shape and spacing is None
    cv2.imwrite(str(tmp_path / "wide.png"), image.astype(np.uint16) * 256)
    assert np.abs(read_radiograph(tmp_path / "wide.png")[0].astype(int) - image).max() <= 1


def test_bad_files_name_the_file_and_the_problem(tmp_path):
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG not really")
    with pytest.raises(ValueError, match=r"corrupt\.png: cannot decode"):
        read_radiograph(corrupt)
    blank = tmp_path / "blank.tif"
    cv2.imwrite(str(blank), np.full((20, 20), 7, np.uint16))
    with pytest.raises(ValueError, match=r"blank\.tif: the image is blank"):
        read_radiograph(blank)
    fake = tmp_path / "fake.dcm"
    fake.write_bytes(b"\0" * 200)
    with pytest.raises(ValueError, match=r"fake\.dcm: not a readable DICOM"):
        read_radiograph(fake)
    with pytest.raises(ValueError, match=r"gone\.png: no such file"):
        read_radiograph(tmp_path / "gone.png")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="unsupported file type"):
        read_radiograph(tmp_path / "notes.txt")
