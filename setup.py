"""xvfa_ext: explainable vertebral fracture assessment as a detectron2/detrex extension."""

from setuptools import find_packages, setup

setup(
    name="xvfa_ext",
    version="0.1.0",
    description="Explainable vertebral fracture assessment (XVFA): GSQ rules, RLE keypoints, detectron2 models",
    packages=find_packages(include=["xvfa_ext", "xvfa_ext.*"]),
    package_data={"xvfa_ext.review": ["static/*"]},
    python_requires=">=3.9",
    install_requires=[
        "torch>=2.1",
        "torchvision>=0.16",
        "fvcore>=0.1.5",
        "pydicom>=3.0",
        "highdicom>=0.22",
        "nflows>=0.14",
        "numpy",
        "scikit-learn>=1.3",
        "opencv-python-headless>=4.8",
        "pycocotools>=2.0.7",
        "matplotlib>=3.7",
        "tensorboard",
        "tqdm",
        "flask>=2.2",
    ],
    extras_require={
        # the review application's browser tests drive the system's chromium
        "test": ["pytest>=7", "pytest-xdist>=3", "playwright>=1.40"],
        # compressed DICOM (JPEG, JPEG-LS, JPEG 2000) through pydicom's pylibjpeg handlers
        "dicom": ["pylibjpeg>=2.0", "pylibjpeg-libjpeg>=2.1", "pylibjpeg-openjpeg>=2.3"],
    },
)
