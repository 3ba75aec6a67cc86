import cv2
import numpy as np
import pytest

from synthetic_dicom import write_dicom
from xvfa_ext.radiograph_io import find_radiographs, read_film, read_radiograph
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


def test_compressed_pixels_without_a_decoder_name_the_syntax_and_the_extra(tmp_path):
    from pydicom import dcmread
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEG2000Lossless

    write_dicom(tmp_path / "plain.dcm", np.full((64, 48), 5, np.uint8))
    ds = dcmread(tmp_path / "plain.dcm")
    ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + b"\x00" * 40])  # a broken JPEG 2000 stream
    ds["PixelData"].VR = "OB"
    ds.save_as(tmp_path / "j2k", enforce_file_format=True)
    with pytest.raises(ValueError, match=r"j2k: its pixels are compressed as JPEG 2000 .*pip install xvfa_ext\[dicom\]"):
        read_film(tmp_path / "j2k")


def test_radiographs_are_found_by_content_recursively_once_each(tmp_path):
    image = (np.arange(64 * 48).reshape(64, 48) % 251).astype(np.uint8)
    (tmp_path / "a" / "b").mkdir(parents=True)
    write_dicom(tmp_path / "a" / "b" / "IM0001", image)  # no extension: found by its DICM mark
    cv2.imwrite(str(tmp_path / "a" / "scan.png"), image)
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    (tmp_path / "a" / ".hidden.png").write_bytes(b"")
    files, missing = find_radiographs([tmp_path, str(tmp_path / "a" / "scan.png"), str(tmp_path / "nothing*.png")])
    assert sorted(p.name for p in files) == ["IM0001", "scan.png"] and missing == [str(tmp_path / "nothing*.png")]
    assert read_film(tmp_path / "a" / "b" / "IM0001").uids["sop_uid"]
