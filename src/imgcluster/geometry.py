"""Geometric verification of candidate duplicate pairs: local features matched with RANSAC.

A crop, a mirror or a resize of a picture maps onto the original by one similarity transform
(scale, rotation, shift, perhaps a mirror); two different pictures do not, however alike their
colours and textures. For a candidate pair, ORB key-points (OpenCV) of one image and of its mirror
are matched to the other's, and a 4-degree-of-freedom transform is fitted with RANSAC. The pair is
a copy when enough matches agree (``min_matches``) and the transformed image lands on the other
(``min_overlap`` of the smaller picture inside the larger): a periodic texture can yield a
consistent shift between two halves of one photo, but that shift moves one half off the other.

OpenCV is optional (``pip install 'imgcluster[dedup]'``): ``opencv_available()`` says whether it
imports, and without it callers skip verification (and say so in the log).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image


def opencv_available() -> bool:
    """Whether OpenCV (``cv2``, from opencv-python-headless) imports."""
    try:
        import cv2  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass(frozen=True)
class Match:
    """A verified pair: ``matches`` key-points agree with ``matrix`` (2x3, original pixels), the
    transform that maps the second image's pixels onto the first's (a mirror included when
    ``mirrored``); ``sizes`` are the two images' (width, height) and ``overlap`` the share of the
    smaller picture that lies inside the other."""

    matches: int
    matrix: tuple[tuple[float, float, float], tuple[float, float, float]]
    sizes: tuple[tuple[int, int], tuple[int, int]]
    overlap: float

    @property
    def mirrored(self) -> bool:
        return float(np.linalg.det(np.asarray(self.matrix)[:, :2])) < 0

    def inverse(self) -> "Match":
        """The same match seen from the other image (first onto second)."""
        full = np.vstack([np.asarray(self.matrix), [0.0, 0.0, 1.0]])
        inverse = np.linalg.inv(full)[:2]
        return Match(self.matches, _rows(inverse), (self.sizes[1], self.sizes[0]), self.overlap)

    def transform(self) -> dict[str, Any]:
        """The transform as plain JSON values: mirrored (the second image left-right first), then
        scale (its pixels to the first's), rotation (degrees) and shift (where its top-left corner,
        after the mirror, lands in the first, in pixels)."""
        matrix = np.asarray(self.matrix)
        if self.mirrored:  # undo the mirror: x → width - x, so what is left is a plain similarity
            matrix = matrix @ np.array([[-1.0, 0.0, self.sizes[1][0]], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
        scale = math.sqrt(abs(float(np.linalg.det(matrix[:, :2]))))
        rotation = math.degrees(math.atan2(float(matrix[1, 0]), float(matrix[0, 0])))
        return {"mirrored": self.mirrored, "scale": round(scale, 3), "rotation": round(rotation, 1),
                "shift": [round(float(matrix[0, 2]), 1), round(float(matrix[1, 2]), 1)]}


def _rows(matrix: np.ndarray) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    return (tuple(float(v) for v in matrix[0]), tuple(float(v) for v in matrix[1]))  # type: ignore[return-value]


@dataclass
class Features:
    """ORB key-points of one image and of its mirror, on the image resized to the verifier's side."""

    size: tuple[int, int]        # (width, height) of the image the features were found on
    factor: float                # those pixels per original pixel
    points: list[np.ndarray]     # (k, 2) key-point positions: as is, then mirrored
    descriptors: list[np.ndarray | None]


class GeometricVerifier:
    """Checks candidate pairs with ORB features and RANSAC. ``side``: images are resized so their
    longer side has this many pixels (features at one scale; 512 px: ~14 ms per image on one core);
    ``features``: ORB key-points per image; ``min_matches``: agreeing matches needed (a 90% crop of a
    textured photo keeps 100-800 of 1,000; two different photos rarely reach 10); ``min_overlap``:
    the share of the smaller picture that must land on the other (copies 0.95-1; the periodic shift
    between two halves of a texture photo measured 0.46); ``min_features``: fewer key-points than
    this in either image and ``can_verify`` says the pair cannot be judged."""

    def __init__(self, side: int = 512, features: int = 1000, min_matches: int = 15, min_overlap: float = 0.8,
                 min_features: int = 100):
        self.side, self.features, self.min_matches, self.min_overlap = side, features, min_matches, min_overlap
        self.min_features = min_features

    def can_verify(self, features: "Features") -> bool:
        """Whether ``features`` are enough to refute a pair: a smooth picture (a gradient, a clock
        face: 0-10 ORB points at 512 px) can neither confirm nor refute a copy."""
        return len(features.points[0]) >= self.min_features

    def features_of(self, image: Image.Image) -> "Features":
        """ORB features of ``image`` and of its mirror (find them once per image, verify many pairs)."""
        import cv2

        grey = np.asarray(image.convert("L"))
        factor = self.side / max(grey.shape)
        size = (max(1, round(grey.shape[1] * factor)), max(1, round(grey.shape[0] * factor)))
        grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR)
        # fastThreshold 10 (default 20): smooth photos (a clock, a horse's outline) keep enough corners
        orb = cv2.ORB_create(nfeatures=self.features, fastThreshold=10)
        points, descriptors = [], []
        for view in (grey, np.ascontiguousarray(grey[:, ::-1])):
            keypoints, found = orb.detectAndCompute(view, None)
            points.append(np.float32([k.pt for k in keypoints]).reshape(-1, 2))
            descriptors.append(found)
        return Features(size, factor, points, descriptors)

    def verify(self, first: Features, second: Features) -> Match | None:
        """The transform that maps ``second`` (or its mirror) onto ``first``, or None when too few
        matches agree or the mapped picture misses the other."""
        fits = [self._fit(first, second, mirrored) for mirrored in (False, True)]
        good = [f for f in fits if f is not None and f.matches >= self.min_matches and f.overlap >= self.min_overlap]
        return max(good, key=lambda f: f.matches, default=None)

    def _fit(self, first: Features, second: Features, mirrored: bool) -> Match | None:
        import cv2

        target, query = first.descriptors[0], second.descriptors[int(mirrored)]
        if target is None or query is None or len(target) < 2 or len(query) < 2:
            return None
        pairs = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(query, target, k=2)
        # Lowe's ratio test: keep a match only when clearly better than the second best
        good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < 0.8 * p[1].distance]
        if len(good) < max(4, self.min_matches // 2):
            return None
        source = second.points[int(mirrored)][[m.queryIdx for m in good]]
        dest = first.points[0][[m.trainIdx for m in good]]
        matrix, inliers = cv2.estimateAffinePartial2D(source, dest, method=cv2.RANSAC,
                                                      ransacReprojThreshold=0.01 * self.side, maxIters=2000,
                                                      confidence=0.99, refineIters=10)
        if matrix is None:
            return None
        return _match(matrix, int(inliers.sum()), first, second, mirrored)


def _match(matrix: np.ndarray, matches: int, first: Features, second: Features, mirrored: bool) -> Match | None:
    """A Match in original pixels from ``matrix`` (2x3: second's resized, perhaps mirrored, pixels →
    first's resized pixels), or None when it shrinks or grows the picture implausibly."""
    import cv2

    scale = math.sqrt(abs(float(np.linalg.det(matrix[:, :2]))))
    if not 0.2 <= scale <= 5:  # both are resized to one side: a copy is not 5 times smaller than that
        return None
    width, height = second.size
    corners = np.float32([[0, 0], [width, 0], [width, height], [0, height]])
    mapped = (corners @ matrix[:, :2].T + matrix[:, 2]).astype(np.float32)
    frame = np.float32([[0, 0], [first.size[0], 0], [first.size[0], first.size[1]], [0, first.size[1]]])
    inside, _ = cv2.intersectConvexConvex(mapped, frame)
    smaller = min(scale * scale * width * height, first.size[0] * first.size[1])
    overlap = float(inside) / smaller if smaller > 0 else 0.0
    # original pixels: second's original → its resized (x factor) → mirrored → first's resized → first's
    flip = np.array([[-1.0, 0.0, width], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]) if mirrored else np.eye(3)
    full = (np.diag([1 / first.factor, 1 / first.factor, 1.0]) @ np.vstack([matrix, [0.0, 0.0, 1.0]]) @ flip
            @ np.diag([second.factor, second.factor, 1.0]))
    sizes = ((round(first.size[0] / first.factor), round(first.size[1] / first.factor)),
             (round(width / second.factor), round(height / second.factor)))
    return Match(matches, _rows(full[:2]), sizes, overlap)
