"""Image → model input with Pillow and NumPy only (torchvision does not work with our torch)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class Preprocess:
    """Resize the shorter side to ``resize``, centre-crop ``crop``×``crop``, scale to [0,1], normalise."""

    resize: int
    crop: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resample: str = "bicubic"

    def __call__(self, image: Image.Image) -> np.ndarray:
        """RGB image → float32 array (3, crop, crop)."""
        width, height = image.size
        scale = self.resize / min(width, height)
        size = (max(self.crop, round(width * scale)), max(self.crop, round(height * scale)))
        resample = Image.Resampling.BICUBIC if self.resample == "bicubic" else Image.Resampling.BILINEAR
        image = image.resize(size, resample, reducing_gap=3.0)
        left, top = (size[0] - self.crop) // 2, (size[1] - self.crop) // 2
        image = image.crop((left, top, left + self.crop, top + self.crop))
        pixels = np.asarray(image, dtype=np.float32) * (1.0 / 255.0)
        pixels = (pixels - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return np.ascontiguousarray(pixels.transpose(2, 0, 1))

    def describe(self) -> dict[str, object]:
        return {"resize_shorter_side": self.resize, "center_crop": self.crop, "mean": list(self.mean),
                "std": list(self.std), "resample": self.resample}
