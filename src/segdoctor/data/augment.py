"""Joint augmentation of image and mask, in numpy/scipy: exact alignment, exact mask values.

Geometric transforms (crop, translation, free rotation, scale, shear, elastic deformation) are
combined into **one sampling grid**: for every output pixel, the source coordinate
``start + c + A (p - c) + d(p)`` (``c`` the patch centre, ``A`` rotation x shear x 1/scale,
``d`` a smooth random displacement). The image is sampled on that grid with bilinear interpolation
(``image_order=1``) and the mask on the *same grid* with nearest neighbour (order 0), so mask values
never change and image and mask stay aligned. Flips and 90-degree rotations are applied afterwards
as exact array operations. Points outside the source are filled with ``0`` for the image (the mean
after z-scoring) and ``mask_fill`` for the mask (background, or ``ignore_index`` when set), or are
mirrored for both with ``fill="reflect"``.

Photometric transforms change the image only, after the geometric ones. Colour (off by default)
rotates the hue and scales the saturation of an RGB patch in the normalized channel space, around
the gray axis where the three z-scored channels are equal: a stain or colour shift between sources,
as between H&E slides of two labs; gray images (three equal channels) are left unchanged.
Brightness, contrast, gamma, Gaussian noise and Gaussian blur work in units of the patch's own
standard deviation.

Defaults follow nnU-Net's probabilities: flips and rot90 often, rotation and scale in 20% of the
patches, elastic off. Keras' RandomRotation / RandomElasticTransform are deliberately not used
(they misalign image and mask on Keras 3.15).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from segdoctor.data.sizing import crop
from segdoctor.errors import ConfigError, check_choice


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges of each transform (probability 0 disables it).

    Attributes:
        flip: Probability of a flip, for each axis independently.
        rot90: Probability of a 90/180/270-degree rotation (only 180 for non-square patches).
        rotate: Probability of a free rotation by up to ``rotate_degrees`` either way.
        rotate_degrees: Range of the free rotation.
        scale: Probability of zooming by a factor in ``scale_range`` (> 1 zooms in).
        scale_range: Zoom range.
        translate: Probability of a shift by up to ``translate_fraction`` of the patch size.
        translate_fraction: Range of the shift.
        shear: Probability of a shear by up to ``shear_degrees``.
        shear_degrees: Range of the shear.
        elastic: Probability of an elastic deformation.
        elastic_alpha: Largest displacement in pixels (typical).
        elastic_spacing: Spacing in pixels of the random control grid (smoothness).
        brightness: Probability of adding ``U(-r, r) * std`` with ``r = brightness_range``.
        brightness_range: See ``brightness``.
        contrast: Probability of scaling around the mean by a factor in ``contrast_range``.
        contrast_range: See ``contrast``.
        gamma: Probability of a gamma change in ``gamma_range`` (on the min-max rescaled patch).
        gamma_range: See ``gamma``.
        noise: Probability of Gaussian noise with std up to ``noise_std * std``.
        noise_std: See ``noise``.
        blur: Probability of Gaussian blur with sigma in ``blur_sigma`` pixels.
        blur_sigma: See ``blur``.
        color: Probability of a hue rotation by up to ``color_hue_degrees`` either way and a
            saturation scale in ``color_saturation`` (RGB patches; saturation alone for 2 channels).
        color_hue_degrees: See ``color``.
        color_saturation: See ``color``.
        image_order: Interpolation order of the image (1 bilinear, 0 nearest, 3 cubic).
        fill: ``"constant"`` or ``"reflect"`` for points outside the image.

    Example:
        >>> AugmentConfig.light().rotate
        0.0
    """

    flip: float = 0.5
    rot90: float = 0.5
    rotate: float = 0.2
    rotate_degrees: float = 180.0
    scale: float = 0.2
    scale_range: tuple[float, float] = (0.7, 1.4)
    translate: float = 0.0
    translate_fraction: float = 0.1
    shear: float = 0.0
    shear_degrees: float = 10.0
    elastic: float = 0.0
    elastic_alpha: float = 8.0
    elastic_spacing: float = 32.0
    brightness: float = 0.15
    brightness_range: float = 0.25
    contrast: float = 0.15
    contrast_range: tuple[float, float] = (0.75, 1.25)
    gamma: float = 0.3
    gamma_range: tuple[float, float] = (0.7, 1.5)
    noise: float = 0.1
    noise_std: float = 0.1
    blur: float = 0.2
    blur_sigma: tuple[float, float] = (0.5, 1.0)
    color: float = 0.0
    color_hue_degrees: float = 36.0
    color_saturation: tuple[float, float] = (0.5, 1.5)
    image_order: int = 1
    fill: str = "constant"

    def __post_init__(self) -> None:
        for name in _PROBABILITIES:
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ConfigError(
                    f"Augmentation probability {name} out of range",
                    expected="a probability in [0, 1]",
                    received=repr(p),
                )
        check_choice("fill", self.fill, ("constant", "reflect"))
        if self.image_order not in (0, 1, 3):
            raise ConfigError(
                "image_order must be 0, 1 or 3",
                expected="0, 1 or 3",
                received=repr(self.image_order),
            )
        if not 0 <= self.color_saturation[0] <= self.color_saturation[1]:
            raise ConfigError(
                "Invalid color_saturation",
                expected="0 <= low <= high",
                received=repr(self.color_saturation),
            )
        if self.scale_range[0] <= 0 or self.scale_range[0] > self.scale_range[1]:
            raise ConfigError(
                "Invalid scale_range", expected="0 < low <= high", received=repr(self.scale_range)
            )

    @classmethod
    def none(cls) -> AugmentConfig:
        """No augmentation at all."""
        return cls(**{k: 0.0 for k in _PROBABILITIES})

    @classmethod
    def light(cls) -> AugmentConfig:
        """Only flips and 90-degree rotations (exact, no interpolation)."""
        zero = {k: 0.0 for k in _PROBABILITIES if k not in ("flip", "rot90")}
        return cls(**zero)

    @classmethod
    def strong(cls) -> AugmentConfig:
        """Everything on, elastic and colour included."""
        return cls(translate=0.2, shear=0.2, elastic=0.2, color=0.5)

    @property
    def spatial(self) -> bool:
        """Whether any interpolating transform can be sampled."""
        return any(
            getattr(self, k) > 0 for k in ("rotate", "scale", "translate", "shear", "elastic")
        )


_PROBABILITIES = (
    "flip rot90 rotate scale translate shear elastic color brightness contrast gamma noise blur"
).split()


@dataclass
class Geometry:
    """One sampled transform: ``matrix`` (2, 2), ``shift`` (2,), optional ``displacement``."""

    matrix: np.ndarray = field(default_factory=lambda: np.eye(2))
    shift: np.ndarray = field(default_factory=lambda: np.zeros(2))
    displacement: np.ndarray | None = None  # (2, ph, pw), in pixels
    flips: tuple[bool, bool] = (False, False)
    rot90: int = 0

    @property
    def interpolates(self) -> bool:
        """Whether sampling needs interpolation (anything beyond an integer crop)."""
        return (
            self.displacement is not None
            or not np.allclose(self.matrix, np.eye(2))
            or not np.allclose(self.shift, np.round(self.shift))
        )


def sample_geometry(
    config: AugmentConfig, rng: np.random.Generator, size: tuple[int, int]
) -> Geometry:
    """Draw one geometric transform for a patch of ``size`` (height, width)."""
    geo = Geometry()
    a = np.eye(2)
    if rng.random() < config.rotate:
        t = math.radians(rng.uniform(-config.rotate_degrees, config.rotate_degrees))
        a = a @ np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    if rng.random() < config.shear:
        s = math.tan(math.radians(rng.uniform(-config.shear_degrees, config.shear_degrees)))
        a = a @ np.array([[1.0, s], [0.0, 1.0]])
    if rng.random() < config.scale:
        lo, hi = config.scale_range
        zoom = math.exp(rng.uniform(math.log(lo), math.log(hi)))  # log-uniform
        a = a / zoom  # output step 1 <-> source step 1/zoom
    geo.matrix = a
    if rng.random() < config.translate:
        geo.shift = rng.uniform(-1, 1, 2) * config.translate_fraction * np.asarray(size)
    if rng.random() < config.elastic:
        geo.displacement = elastic_field(size, config.elastic_alpha, config.elastic_spacing, rng)
    geo.flips = (bool(rng.random() < config.flip), bool(rng.random() < config.flip))
    if rng.random() < config.rot90:
        geo.rot90 = int(rng.integers(1, 4)) if size[0] == size[1] else 2
    return geo


def elastic_field(
    size: tuple[int, int], alpha: float, spacing: float, rng: np.random.Generator
) -> np.ndarray:
    """Smooth random displacement field ``(2, H, W)`` in pixels.

    Random displacements on a coarse control grid (one point per ``spacing`` pixels, std
    ``alpha / 2``) are interpolated with a cubic spline to full resolution.
    """
    h, w = size
    gh, gw = max(2, math.ceil(h / spacing) + 1), max(2, math.ceil(w / spacing) + 1)
    coarse = rng.normal(0.0, alpha / 2, (2, gh, gw))  # (2, gh, gw)
    rows = np.linspace(0, gh - 1, h)
    cols = np.linspace(0, gw - 1, w)
    grid = np.stack(np.meshgrid(rows, cols, indexing="ij"))  # (2, H, W)
    return np.stack(
        [ndimage.map_coordinates(coarse[k], grid, order=3, mode="nearest") for k in range(2)]
    )


def sampling_grid(start: tuple[float, float], size: tuple[int, int], geo: Geometry) -> np.ndarray:
    """Source coordinates ``(2, ph, pw)`` of every output pixel of a patch at ``start``."""
    ph, pw = size
    centre = np.array([(ph - 1) / 2, (pw - 1) / 2])
    a = geo.matrix.astype(np.float32)
    origin = (np.asarray(start) + centre + geo.shift).astype(np.float32)
    rr = (np.arange(ph, dtype=np.float32) - np.float32(centre[0]))[:, None]  # (ph, 1)
    cc = (np.arange(pw, dtype=np.float32) - np.float32(centre[1]))[None, :]  # (1, pw)
    coords = np.empty((2, ph, pw), np.float32)  # source (row, col) of every output pixel
    coords[0] = a[0, 0] * rr + a[0, 1] * cc + origin[0]
    coords[1] = a[1, 0] * rr + a[1, 1] * cc + origin[1]
    if geo.displacement is not None:
        coords += geo.displacement.astype(np.float32)
    return coords


def extract_patch(
    image: np.ndarray,
    mask: np.ndarray | None,
    start: tuple[int, int],
    size: tuple[int, int],
    geo: Geometry | None = None,
    *,
    image_order: int = 1,
    fill: str = "constant",
    mask_fill: int = 0,
    channels_first: bool = False,
    copy: bool = True,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Cut a patch of ``size`` at ``start`` from image (H, W, C) and mask (H, W), transformed.

    Without ``geo`` (or with only flips/rot90) this is an exact crop with padding; otherwise the
    image and mask are sampled on one shared grid (see module docstring).

    Args:
        image: ``(H, W, C)``, or ``(C, H, W)`` contiguous planes with ``channels_first=True``
            (faster to sample: the loader caches images that way).
        mask: ``(H, W)`` or ``None``.
        start: Top-left corner of the patch in the source (may be negative).
        size: ``(ph, pw)``.
        geo: The transform (default: none, a plain crop).
        image_order: Image interpolation (0 nearest, 1 bilinear, 3 cubic).
        fill: ``"constant"`` or ``"reflect"``.
        mask_fill: Mask value outside the source (``fill="constant"``).
        channels_first: Whether ``image`` is ``(C, H, W)``.
        copy: Return contiguous new arrays; ``False`` may return views of the inputs (faster
            when the caller copies anyway, as the loader does into its batch).

    Returns:
        ``(image (ph, pw, C), mask (ph, pw))``; the mask keeps its dtype and values.
    """
    geo = geo or Geometry()
    if channels_first:
        planes = image
        image = image.transpose(1, 2, 0)  # (H, W, C) view
    else:
        planes = None
    if not geo.interpolates:
        start_i = (round(float(start[0] + geo.shift[0])), round(float(start[1] + geo.shift[1])))
        if fill == "reflect":
            img, msk = _reflect_crop(image, mask, start_i, size)
        else:
            img = crop(image, start_i, size, fill=0)
            msk = None if mask is None else crop(mask, start_i, size, fill=mask_fill)
    else:
        coords = sampling_grid(start, size, geo)  # (2, ph, pw)
        if planes is None:
            planes = np.ascontiguousarray(image.transpose(2, 0, 1))  # (C, H, W)
        img, msk = _sample_planes(
            planes, mask, coords, image_order=image_order, fill=fill, mask_fill=mask_fill
        )
    return _flip_rotate(img, msk, geo, copy)


def _axis_index(idx: np.ndarray, n: int, fill: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Integer source indices along one axis, mirrored or clipped, and (constant) validity."""
    if fill == "reflect":
        return _mirror_index(idx, n), None
    return np.clip(idx, 0, n - 1), (idx >= 0) & (idx < n)


def _and(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
    return None if a is None or b is None else a & b


def sample_on_grid(
    image: np.ndarray,
    mask: np.ndarray | None,
    coords: np.ndarray,
    *,
    image_order: int = 1,
    fill: str = "constant",
    mask_fill: int = 0,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Sample image (H, W, C) and mask (H, W) at source coordinates ``coords`` (2, ph, pw).

    The mask takes the nearest pixel, ``floor(coord + 0.5)``; the image is bilinear
    (``image_order=1``) over the four neighbours of the same coordinate, nearest with
    ``image_order=0`` (the very pixel the mask takes), or a cubic spline (``3``, scipy). Outside
    the source: ``fill="constant"`` gives the image 0 (outside neighbours count as 0) and the mask
    ``mask_fill``; ``fill="reflect"`` mirrors both.

    Returns:
        ``(image (ph, pw, C) float32, mask (ph, pw) or None)``.
    """
    planes = np.ascontiguousarray(np.moveaxis(image, -1, 0))  # (C, H, W)
    return _sample_planes(
        planes, mask, coords, image_order=image_order, fill=fill, mask_fill=mask_fill
    )


def _sample_planes(
    planes: np.ndarray,
    mask: np.ndarray | None,
    coords: np.ndarray,
    *,
    image_order: int,
    fill: str,
    mask_fill: int,
) -> tuple[np.ndarray, np.ndarray | None]:
    """:func:`sample_on_grid` on contiguous channel planes ``(C, H, W)`` (1-D gathers are fast)."""
    c, h, w = planes.shape
    out_shape = coords.shape[1:]
    rr, cc = coords[0].ravel(), coords[1].ravel()  # (N,)
    flat = planes.reshape(c, h * w)  # (C, H*W)
    near_r, near_vr = _axis_index(np.floor(rr + 0.5).astype(np.intp), h, fill)
    near_c, near_vc = _axis_index(np.floor(cc + 0.5).astype(np.intp), w, fill)
    near = near_r * w + near_c  # (N,) flat index of the nearest source pixel
    near_valid = _and(near_vr, near_vc)
    msk = None
    if mask is not None:
        msk = np.take(mask.reshape(-1), near)
        if near_valid is not None:
            msk = np.where(near_valid, msk, np.asarray(mask_fill, dtype=mask.dtype))
        msk = msk.reshape(out_shape)
    out = np.empty((*out_shape, c), np.float32)  # (ph, pw, C)
    if image_order == 0:
        for k in range(c):
            v = np.take(flat[k], near)
            out[..., k] = (v * near_valid if near_valid is not None else v).reshape(out_shape)
        return out, msk
    if image_order == 3:
        mode = "mirror" if fill == "reflect" else "grid-constant"
        for k in range(c):
            out[..., k] = ndimage.map_coordinates(planes[k], coords, order=3, mode=mode, cval=0.0)
        return out, msk
    fr, fc = np.floor(rr), np.floor(cc)
    r0, c0 = fr.astype(np.intp), fc.astype(np.intp)
    fr = (rr - fr).astype(np.float32)  # fractional parts
    fc = (cc - fc).astype(np.float32)
    rows = [_axis_index(r0, h, fill), _axis_index(r0 + 1, h, fill)]
    cols = [_axis_index(c0, w, fill), _axis_index(c0 + 1, w, fill)]
    wr, wc = [1 - fr, fr], [1 - fc, fc]
    corners = []  # (flat index (N,), weight (N,)) of the four neighbours
    for i in (0, 1):
        for j in (0, 1):
            weight = wr[i] * wc[j]
            valid = _and(rows[i][1], cols[j][1])
            if valid is not None:
                weight *= valid
            corners.append((rows[i][0] * w + cols[j][0], weight))
    for k in range(c):
        plane = flat[k]
        acc = np.take(plane, corners[0][0]) * corners[0][1]
        for idx, weight in corners[1:]:
            acc += np.take(plane, idx) * weight
        out[..., k] = acc.reshape(out_shape)
    return out, msk


def _reflect_crop(image, mask, start, size):
    h, w = image.shape[:2]
    rows = _mirror_index(np.arange(start[0], start[0] + size[0]), h)
    cols = _mirror_index(np.arange(start[1], start[1] + size[1]), w)
    img = image[rows][:, cols]
    msk = None if mask is None else mask[rows][:, cols]
    return img, msk


def _mirror_index(idx: np.ndarray, n: int) -> np.ndarray:
    """Mirror indices into [0, n) the way scipy's ``mode="mirror"`` does (no edge repeat)."""
    if n == 1:
        return np.zeros_like(idx)
    period = 2 * (n - 1)
    idx = np.abs(idx) % period
    return np.where(idx >= n, period - idx, idx)


def _flip_rotate(img, msk, geo: Geometry, copy: bool = True):
    axes = tuple(a for a, f in enumerate(geo.flips) if f)
    if axes:
        img = np.flip(img, axes)
        msk = None if msk is None else np.flip(msk, axes)
    if geo.rot90:
        img = np.rot90(img, geo.rot90, axes=(0, 1))
        msk = None if msk is None else np.rot90(msk, geo.rot90, axes=(0, 1))
    if copy:
        img = np.array(img, order="C")
        msk = None if msk is None else np.array(msk, order="C")
    return img, msk


def photometric(image: np.ndarray, config: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """Colour, brightness, contrast, gamma, noise and blur on a float image (H, W, C); never the mask.

    Returns the input unchanged (same object) when no transform is drawn, else a new float32
    ``(H, W, C)`` array. Statistics are per channel over the patch; work happens on contiguous
    channel planes (per-channel reductions over (H, W) are much faster that way).
    """
    draws = {
        name: rng.random() < getattr(config, name)
        for name in ("color", "brightness", "contrast", "gamma", "noise", "blur")
    }
    draws["color"] = draws["color"] and image.shape[-1] in (2, 3)
    if not any(draws.values()):
        return image
    x = np.array(np.moveaxis(image, -1, 0), dtype=np.float32, order="C")  # (C, H, W)
    std: float | None = None
    if draws["color"]:
        x = recolor(
            x,
            math.radians(rng.uniform(-config.color_hue_degrees, config.color_hue_degrees)),
            rng.uniform(*config.color_saturation),
        )

    def scale() -> float:  # the patch's standard deviation, computed only when needed
        nonlocal std
        if std is None:
            std = float(x.std()) or 1.0
        return std

    if draws["brightness"]:
        x += np.float32(rng.uniform(-config.brightness_range, config.brightness_range) * scale())
    if draws["contrast"]:
        mean = x.mean(axis=(1, 2), keepdims=True)  # (C, 1, 1)
        x = (x - mean) * np.float32(rng.uniform(*config.contrast_range)) + mean
    if draws["gamma"]:
        g = np.float32(rng.uniform(*config.gamma_range))
        lo = x.min(axis=(1, 2), keepdims=True)  # (C, 1, 1)
        span = np.maximum(x.max(axis=(1, 2), keepdims=True) - lo, np.float32(1e-6))
        x = ((x - lo) / span) ** g * span + lo
    if draws["noise"]:
        sigma = np.float32(rng.uniform(0, config.noise_std) * scale())
        x += rng.standard_normal(x.shape, dtype=np.float32) * sigma
    if draws["blur"]:
        s = rng.uniform(*config.blur_sigma)
        x = ndimage.gaussian_filter(x, sigma=(0, s, s))
    return np.moveaxis(x.astype(np.float32, copy=False), 0, -1)  # (H, W, C)


def recolor(x: np.ndarray, hue: float, saturation: float) -> np.ndarray:
    """Rotate the hue of a ``(C, H, W)`` image by ``hue`` radians and scale its saturation.

    Each pixel's channel vector is split into its gray part (the channel mean, repeated) and its
    chroma (the rest); the chroma of a 3-channel image is rotated by ``hue`` around the gray axis
    and scaled by ``saturation``. The gray part, and so an image whose channels are equal, is
    unchanged. With 2 channels only the saturation applies.

    Example:
        >>> x = np.array([1.0, 0.0, -1.0], np.float32).reshape(3, 1, 1)
        >>> recolor(x, 0.0, 0.5)[:, 0, 0].tolist()
        [0.5, 0.0, -0.5]
        >>> y = recolor(x, 2 * math.pi / 3, 1.0)[:, 0, 0]  # a third of a turn: R -> G -> B
        >>> np.allclose(y, [-1.0, 1.0, 0.0], atol=1e-6)
        True
    """
    gray = x.mean(axis=0, keepdims=True)
    chroma = x - gray
    if x.shape[0] == 3 and hue:
        # Rodrigues' rotation about k = (1, 1, 1) / sqrt(3); chroma is orthogonal to k, so
        # R c = cos(t) c + sin(t) (k x c).
        r, g, b = chroma
        cross = np.stack([b - g, r - b, g - r]) / np.float32(math.sqrt(3.0))
        chroma = np.float32(math.cos(hue)) * chroma + np.float32(math.sin(hue)) * cross
    return gray + np.float32(saturation) * chroma


class Augmenter:
    """Augments whole ``(image, mask)`` pairs (output has the input size).

    Args:
        config: An :class:`AugmentConfig` (default: nnU-Net-like defaults).
        mask_fill: Mask value for pixels outside the source (background, or ignore_index).

    Example:
        >>> import numpy as np
        >>> aug = Augmenter(AugmentConfig.strong())
        >>> img, msk = aug(np.zeros((32, 32, 1), np.float32), np.ones((32, 32), np.int32),
        ...                np.random.default_rng(0))
        >>> img.shape, msk.shape, set(np.unique(msk)) <= {0, 1}
        ((32, 32, 1), (32, 32), True)
    """

    def __init__(self, config: AugmentConfig | None = None, *, mask_fill: int = 0) -> None:
        self.config = config or AugmentConfig()
        self.mask_fill = mask_fill

    def __call__(
        self, image: np.ndarray, mask: np.ndarray | None, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Return the augmented ``(image (H, W, C) float32, mask (H, W))``."""
        size = image.shape[:2]
        geo = sample_geometry(self.config, rng, size)
        img, msk = extract_patch(
            image.astype(np.float32, copy=False),
            mask,
            (0, 0),
            size,
            geo,
            image_order=self.config.image_order,
            fill=self.config.fill,
            mask_fill=self.mask_fill,
        )
        return photometric(img, self.config, rng), msk
