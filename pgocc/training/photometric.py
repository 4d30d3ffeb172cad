"""The training-only photometric distortion of the network-input images (docs/model.md §7.4), on the device.

Per image (mmdet3d's PhotoMetricDistortionMultiViewImage), each step with probability 0.5: brightness + U(−32, 32);
contrast × U(0.5, 1.5) either before (mode 1) or after (mode 0) the HSV changes; saturation × U(0.5, 1.5); hue
+ U(−18°, 18°) (wrapped); a random permutation of the channels. The random parameters are drawn from torch's CPU
generator (a fixed number per image, so the stream is the same on any device), the pixels change on the images'
device. The original keeps the float result unclipped; here it is rounded and clipped to uint8 so that the batch
keeps its dtype. ``render_gt`` (the photometric loss targets) is never distorted.
"""

from __future__ import annotations

import torch

BRIGHTNESS = 32.0
CONTRAST = (0.5, 1.5)
SATURATION = (0.5, 1.5)
HUE = 18.0


def _bgr_to_hsv(img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """[M, 3, H, W] float BGR → hue (degrees in [0, 360)), saturation, value (the channels' scale)."""
    b, g, r = img.unbind(1)
    v, _ = img.max(1)
    delta = v - img.min(1).values
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    h = torch.where(v == r, 60 * (g - b) / safe, torch.where(v == g, 120 + 60 * (b - r) / safe,
                                                             240 + 60 * (r - g) / safe))
    h = torch.where(delta > 0, torch.remainder(h, 360.0), torch.zeros_like(h))
    s = torch.where(v > 0, delta / torch.where(v > 0, v, torch.ones_like(v)), torch.zeros_like(v))
    return h, s, v


def _hsv_to_bgr(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`_bgr_to_hsv`: channel n of (R, G, B) = v − v·s·clamp(min(k, 4 − k), 0, 1), k = (n + h/60)
    mod 6 with n = 5, 3, 1."""
    def channel(n: float) -> torch.Tensor:
        k = torch.remainder(n + h / 60.0, 6.0)
        return v - v * s * torch.clamp(torch.minimum(k, 4.0 - k), 0.0, 1.0)

    return torch.stack([channel(1.0), channel(3.0), channel(5.0)], 1)


def _to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A host tensor on ``device``. To CUDA through pinned memory and a non-blocking copy: a copy from pageable
    memory synchronises the stream, and the host would then wait for the previous step's work at every step."""
    if device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def draw_parameters(num_images: int) -> dict[str, torch.Tensor]:
    """The random choices for ``num_images`` images, from torch's (global) CPU generator."""
    u = torch.rand(num_images, 11)
    return {
        "brightness_on": u[:, 0] < 0.5, "brightness": (2 * u[:, 1] - 1) * BRIGHTNESS,
        "contrast_first": u[:, 2] < 0.5, "contrast_on": u[:, 3] < 0.5,
        "contrast": CONTRAST[0] + (CONTRAST[1] - CONTRAST[0]) * u[:, 4],
        "saturation_on": u[:, 5] < 0.5, "saturation": SATURATION[0] + (SATURATION[1] - SATURATION[0]) * u[:, 6],
        "hue_on": u[:, 7] < 0.5, "hue": (2 * u[:, 8] - 1) * HUE,
        "permute_on": u[:, 9] < 0.5, "permutation": torch.argsort(torch.rand(num_images, 3), dim=1),
    }


def photometric_distortion(images: torch.Tensor, params: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """Distort uint8 BGR images ``[..., 3, H, W]`` (e.g. a batch's [B, T·N, 3, H, W]) image by image.

    Args:
        images: uint8 BGR on any device.
        params: :func:`draw_parameters` for the flattened images; None draws them.

    Returns:
        uint8 images of the same shape and device.
    """
    shape = images.shape
    x = images.reshape(-1, *shape[-3:]).float()
    M = x.shape[0]
    p = {k: _to_device(v, images.device) for k, v in (params or draw_parameters(M)).items()}

    def per_image(t: torch.Tensor) -> torch.Tensor:
        return t.view(M, 1, 1, 1)

    x = x + per_image(torch.where(p["brightness_on"], p["brightness"], 0.0))
    contrast = torch.where(p["contrast_on"], p["contrast"], 1.0)
    x = x * per_image(torch.where(p["contrast_first"], contrast, 1.0))
    h, s, v = _bgr_to_hsv(x)
    s = s * torch.where(p["saturation_on"], p["saturation"], 1.0).view(M, 1, 1)
    h = torch.remainder(h + torch.where(p["hue_on"], p["hue"], 0.0).view(M, 1, 1), 360.0)
    x = _hsv_to_bgr(h, s, v)
    x = x * per_image(torch.where(p["contrast_first"], 1.0, contrast))
    perm = torch.where(p["permute_on"].view(M, 1), p["permutation"], torch.arange(3, device=x.device))
    x = torch.gather(x, 1, perm.view(M, 3, 1, 1).expand_as(x))
    return x.round().clamp(0, 255).to(torch.uint8).reshape(shape)
