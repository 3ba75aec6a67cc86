"""Augmentations of paper suppl. Table 4 that detectron2 lacks, as ``T.Augmentation``s.

Equalisation, inversion and blur change intensities only, so boxes and keypoints pass unchanged;
so do gamma and noise, the photometric augmentations for films of other exposures.
"""

import cv2
import numpy as np
from detectron2.data import transforms as T
from fvcore.transforms.transform import NoOpTransform, Transform


class _IntensityTransform(Transform):
    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        return coords

    def apply_segmentation(self, segmentation: np.ndarray) -> np.ndarray:
        return segmentation

    def inverse(self) -> Transform:
        return NoOpTransform()


def _check_uint8(img: np.ndarray, what: str) -> None:
    if img.dtype != np.uint8:
        raise ValueError(f"{what} needs uint8 images, got {img.dtype}")


class EqualizeTransform(_IntensityTransform):
    def apply_image(self, img: np.ndarray) -> np.ndarray:
        _check_uint8(img, "histogram equalisation")
        if img.ndim == 2:
            return cv2.equalizeHist(img)
        return np.stack([cv2.equalizeHist(np.ascontiguousarray(img[..., c])) for c in range(img.shape[2])], -1)


class InvertTransform(_IntensityTransform):
    def apply_image(self, img: np.ndarray) -> np.ndarray:
        return (255 - img) if img.dtype == np.uint8 else (img.max() - img)


class BlurTransform(_IntensityTransform):
    def __init__(self, sigma: float):
        super().__init__()
        self._set_attributes(locals())

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(img, (0, 0), self.sigma)


class GammaTransform(_IntensityTransform):
    """``255 * (img / 255) ** gamma`` on uint8 images (a look-up table)."""

    def __init__(self, gamma: float):
        super().__init__()
        self._set_attributes(locals())

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        _check_uint8(img, "gamma")
        table = np.clip(np.round(255 * (np.arange(256) / 255) ** self.gamma), 0, 255).astype(np.uint8)
        return table[img]


class NoiseTransform(_IntensityTransform):
    """Gaussian noise of ``sigma`` grey levels on uint8 images, the same on every channel; ``seed``
    makes it repeatable."""

    def __init__(self, sigma: float, seed: int):
        super().__init__()
        self._set_attributes(locals())

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        _check_uint8(img, "noise")
        noise = np.random.default_rng(self.seed).normal(0, self.sigma, img.shape[:2]).astype(np.float32)
        if img.ndim == 3:
            noise = noise[..., None]
        return np.clip(np.round(img + noise), 0, 255).astype(np.uint8)


class _Sometimes(T.Augmentation):
    """An intensity transform with probability ``prob``; :meth:`_transform` draws its parameters."""

    def get_transform(self, image):
        return self._transform() if self._rand_range() < self.prob else NoOpTransform()

    def _transform(self) -> Transform:
        raise NotImplementedError


class RandomEqualize(_Sometimes):
    """Histogram equalisation with probability ``prob``."""

    def __init__(self, prob: float = 0.5):
        super().__init__()
        self._init(locals())

    def _transform(self):
        return EqualizeTransform()


class RandomInvert(_Sometimes):
    """Intensity inversion with probability ``prob``."""

    def __init__(self, prob: float = 0.5):
        super().__init__()
        self._init(locals())

    def _transform(self):
        return InvertTransform()


class RandomBlur(_Sometimes):
    """Gaussian blur of a random sigma in ``sigma_range`` with probability ``prob``."""

    def __init__(self, prob: float = 0.5, sigma_range=(0.5, 1.5)):
        super().__init__()
        self._init(locals())

    def _transform(self):
        return BlurTransform(float(self._rand_range(*self.sigma_range)))


class RandomGamma(_Sometimes):
    """Gamma of a random value in ``gamma_range`` (log-uniform) with probability ``prob``: another exposure."""

    def __init__(self, prob: float = 0.5, gamma_range=(0.6, 1.6)):
        super().__init__()
        self._init(locals())

    def _transform(self):
        lo, hi = np.log(self.gamma_range[0]), np.log(self.gamma_range[1])
        return GammaTransform(float(np.exp(self._rand_range(lo, hi))))


class RandomNoise(_Sometimes):
    """Gaussian noise of a random sigma in ``sigma_range`` grey levels with probability ``prob``: quantum noise."""

    def __init__(self, prob: float = 0.3, sigma_range=(1.0, 6.0)):
        super().__init__()
        self._init(locals())

    def _transform(self):
        return NoiseTransform(float(self._rand_range(*self.sigma_range)), int(np.random.randint(2**31)))
