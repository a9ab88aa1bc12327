"""What the broadcast camera does to a crop: scale, blur, lighting, noise and JPEG compression."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFilter

from reid.synthetic.arena import Scene


def _motion_blur(img: np.ndarray, length: int) -> np.ndarray:
    """Horizontal box blur of `length` pixels (camera panning), by cumulative sums."""
    pad = np.pad(img, ((0, 0), (length // 2 + 1, length - length // 2), (0, 0)), mode="edge")
    c = np.cumsum(pad, axis=1, dtype=np.float32)
    return (c[:, length:length + img.shape[1]] - c[:, :img.shape[1]]) / length


def finish(img: Image.Image, size: tuple[int, int], scene: Scene, rng: np.random.Generator) -> bytes:
    """Downscale, then blur, lighting, noise and JPEG compression: the camera's nuisances."""
    if img.size != size:
        img = img.resize(size, Image.Resampling.BOX if img.size[1] >= 2 * size[1] else Image.Resampling.BILINEAR)
    blur = scene.blur * rng.uniform(0.7, 1.3) * size[1] / 120
    if blur > 0.3:
        img = img.filter(ImageFilter.GaussianBlur(blur))
    arr = np.asarray(img, dtype=np.float32)
    if rng.random() < 0.15:
        arr = _motion_blur(arr, int(rng.integers(2, max(3, size[0] // 12))))
    gain = scene.gain * rng.uniform(0.92, 1.08) * np.asarray(scene.cast, dtype=np.float32)
    ramp = 1 + rng.uniform(-0.4, 0.4) * np.linspace(-1, 1, size[0], dtype=np.float32)  # spotlights and shadow:
    drop = 1 + rng.uniform(-0.4, 0.4) * np.linspace(-1, 1, size[1], dtype=np.float32)  # raw pixels suffer, CNNs less
    arr = arr * gain[None, None, :] * ramp[None, :, None] * drop[:, None, None]
    arr = 255 * (np.clip(arr, 0, 255) / 255) ** rng.uniform(0.9, 1.1)
    arr += rng.normal(0, scene.noise * rng.uniform(0.7, 1.3), arr.shape).astype(np.float32)
    out = io.BytesIO()
    quality = int(np.clip(scene.quality + rng.integers(-5, 6), 30, 95))
    Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8)).save(out, "JPEG", quality=quality)
    return out.getvalue()
