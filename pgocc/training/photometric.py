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
    mod 6 with n = 5, 3, 1; the three channels in one pass (n = 1, 3, 5 for B, G, R)."""
    n = torch.arange(1.0, 6.0, 2.0, dtype=h.dtype, device=h.device).view(1, 3, 1, 1)  # made on the device: no copy
    k = torch.remainder(n + (h / 60.0).unsqueeze(1), 6.0)                                  # [M, 3, H, W]
    return v.unsqueeze(1) - (v * s).unsqueeze(1) * torch.clamp(torch.minimum(k, 4.0 - k), 0.0, 1.0)


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


def _effective(params: dict[str, torch.Tensor]) -> torch.Tensor:
    """[M, 8] float32 per image, on the host: brightness offset, contrast factor before and after the HSV changes,
    saturation factor, hue offset (each the identity where its step is off) and the channel permutation."""
    contrast = torch.where(params["contrast_on"], params["contrast"], 1.0)
    first = params["contrast_first"]
    perm = torch.where(params["permute_on"].view(-1, 1), params["permutation"], torch.arange(3))
    return torch.cat([torch.stack([torch.where(params["brightness_on"], params["brightness"], 0.0),
                                   torch.where(first, contrast, 1.0), torch.where(first, 1.0, contrast),
                                   torch.where(params["saturation_on"], params["saturation"], 1.0),
                                   torch.where(params["hue_on"], params["hue"], 0.0)], 1),
                      perm.to(torch.float32)], 1)


def photometric_distortion(images: torch.Tensor, params: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """Distort uint8 BGR images ``[..., 3, H, W]`` (e.g. a batch's [B, T·N, 3, H, W]) image by image.

    The per-image values are resolved on the host and reach the device as one tensor: on CUDA through pinned memory
    and a non-blocking copy, since a copy from pageable memory synchronises the stream (the host would wait for the
    previous step's work at every step).

    Args:
        images: uint8 BGR on any device.
        params: :func:`draw_parameters` for the flattened images; None draws them.

    Returns:
        uint8 images of the same shape and device.
    """
    shape = images.shape
    x = images.reshape(-1, *shape[-3:]).float()
    M = x.shape[0]
    values = _effective(params or draw_parameters(M))
    if images.device.type == "cuda":
        values = values.pin_memory().to(images.device, non_blocking=True)
    else:
        values = values.to(images.device)
    brightness, contrast_before, contrast_after, saturation, hue = values[:, :5].T.reshape(5, M, 1, 1, 1)
    x = (x + brightness) * contrast_before
    h, s, v = _bgr_to_hsv(x)
    s = s * saturation[:, 0]
    h = torch.remainder(h + hue[:, 0], 360.0)
    x = _hsv_to_bgr(h, s, v) * contrast_after
    perm = values[:, 5:].to(torch.int64)
    x = torch.gather(x, 1, perm.view(M, 3, 1, 1).expand_as(x))
    return x.round().clamp(0, 255).to(torch.uint8).reshape(shape)
