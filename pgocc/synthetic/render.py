"""Camera images of a scene: flat colours with value-noise texture, lane markings, windows, stripes and Lambert
shading from the scene's sun; the sky is a gradient from the horizon to the zenith."""

from __future__ import annotations

import numpy as np

from pgocc.synthetic.kinds import KINDS, SKY, K
from pgocc.synthetic.raycast import MAX_DEPTH, camera_rays, camera_windows, trace
from pgocc.synthetic.scene import Scene
from pgocc.synthetic.texture import sample_texture

_KIND_COLORS = np.array([k.color for k in KINDS], np.float32)
_TEXTURE_STRENGTH = np.array([0.35 if k.name == "road" else 0.3 if k.name == "sidewalk" else 0.8 for k in KINDS],
                             np.float32)
"""[kinds] how much the texture modulates each ground kind's colour (paved surfaces are smoother)."""
_SKY_HORIZON = np.array([0.80, 0.85, 0.90], np.float32)
_SKY_ZENITH = np.array([0.35, 0.55, 0.86], np.float32)
_WINDOW_COLOR = np.array([0.22, 0.28, 0.36], np.float32)
_BARRIER_STRIPE = np.array([0.85, 0.12, 0.10], np.float32)


def render_camera(scene: Scene, cam2global: np.ndarray, k: np.ndarray, t_us: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """RGB uint8 [H, W, 3], depth float32 [H, W] (camera z, sky = MAX_DEPTH), kind [H, W] int64 and
    box index [H, W] int64 (−1 ground, −2 sky) of the camera ``cam2global`` [4, 4] with intrinsics ``k``."""
    h, w = scene.image_size
    dirs = camera_rays(scene.image_size, cam2global, k)
    origin = [float(x) for x in cam2global[:3, 3]]
    t, hit, face = trace(scene, cam2global[:3, 3], dirs, t_us, camera_windows(scene, cam2global, k, t_us), MAX_DEPTH)
    depth = np.where(hit == -2, np.float32(MAX_DEPTH), t)
    # Work on flat per-channel arrays of each pixel group (sky, ground, boxes): cheap 1-D gathers only.
    flat_hit, flat_t = hit.reshape(-1), t.reshape(-1)
    d_all = [np.ascontiguousarray(dirs[..., i]).reshape(-1) for i in range(3)]
    rgb = np.empty((3, h * w), np.float32)
    kind = np.full(h * w, SKY, np.int64)

    idx = np.flatnonzero(flat_hit == -2)
    dx, dy, dz = (d[idx] for d in d_all)
    mix = np.clip(3.0 * dz / np.sqrt(dx * dx + dy * dy + dz * dz), 0.0, 1.0)
    for ch in range(3):
        rgb[ch, idx] = (1 - mix) * _SKY_HORIZON[ch] + mix * _SKY_ZENITH[ch]

    idx = np.flatnonzero(flat_hit == -1)
    if len(idx):
        tt = flat_t[idx]
        px, py = origin[0] + tt * d_all[0][idx], origin[1] + tt * d_all[1][idx]
        gk = scene.ground_kind(px, py)
        kind[idx] = gk
        a, b = scene.global_to_street(px, py)
        strength = _TEXTURE_STRENGTH[gk]
        light = np.float32(0.6 + 0.4 * scene.sun[2])
        gain = (1.0 - 0.5 * strength + strength * sample_texture(scene.texture, a * 2.0, b * 2.0)) * light
        in_cross = np.zeros(a.shape, bool)
        for ac, hw in scene.street.crossings:
            in_cross |= np.abs(a - float(ac)) < hw
        marking = (np.abs(b) < 0.08) & (np.mod(a, 9.0) < 4.0)
        marking |= np.abs(np.abs(b) - (scene.street.road_half - 0.35)) < 0.07
        marking &= (gk == K["road"]) & ~in_cross
        joints = (gk == K["sidewalk"]) & ((np.mod(a, 1.5) < 0.05) | (np.mod(b, 1.5) < 0.05))
        gain = np.where(joints, 0.78 * gain, gain)
        for ch in range(3):
            rgb[ch, idx] = np.where(marking, np.float32(0.88 * (0.6 + 0.4 * scene.sun[2])),
                                    _KIND_COLORS[gk, ch] * gain)

    idx = np.flatnonzero(flat_hit >= 0)
    if len(idx):
        m = flat_hit[idx]
        bk = scene.boxes.kind[m]
        kind[idx] = bk
        f = face.reshape(-1)[idx]
        tt = flat_t[idx]
        dx, dy, dz = (d[idx] for d in d_all)
        px, py, pz = origin[0] + tt * dx, origin[1] + tt * dy, origin[2] + tt * dz
        centres, yaws = scene.box_poses(t_us)
        c, s = np.cos(yaws).astype(np.float32)[m], np.sin(yaws).astype(np.float32)[m]
        rx, ry = px - centres[:, 0].astype(np.float32)[m], py - centres[:, 1].astype(np.float32)[m]
        lx, ly = c * rx + s * ry, -s * rx + c * ry
        # Texture coordinates on the entered face: (along the face, up) for side faces, (x, y) on top.
        p = np.where(f == 0, ly, lx)
        q = np.where(f == 2, ly, pz)
        tex = sample_texture(scene.texture, p * 3.0 + m.astype(np.float32) * 37.0, q * 3.0)
        gain = 0.7 + 0.6 * tex
        vertical = f != 2
        pw, zw = np.mod(p + 50.0, 3.2), np.mod(pz, 3.4)
        windows = (bk == K["building"]) & vertical & (pw > 1.1) & (pw < 2.5) & (zw > 1.2) & (zw < 2.6)
        band = (bk == K["traffic_cone"]) & (np.abs(pz - 0.45) < 0.08)
        stripes = (bk == K["barrier"]) & vertical & (np.mod(p + 10.0, 1.0) < 0.5)
        # Lambert shading with the world-frame normal of the entered face (it points against the ray).
        sun = [float(x) for x in scene.sun]
        d_face = np.where(f == 0, c * dx + s * dy, np.where(f == 1, -s * dx + c * dy, dz))
        lam = np.where(f == 0, c * sun[0] + s * sun[1], np.where(f == 1, -s * sun[0] + c * sun[1], sun[2]))
        shade = 0.55 + 0.45 * np.maximum(-np.sign(d_face) * lam, 0.0)
        colors = scene.boxes.color.astype(np.float32)
        for ch in range(3):
            col = colors[m, ch] * gain
            col = np.where(windows, _WINDOW_COLOR[ch] + 0.15 * tex, col)
            col = np.where(band, np.float32(0.95), col)
            col = np.where(stripes, _BARRIER_STRIPE[ch], col)
            rgb[ch, idx] = col * shade

    out = (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8).T.reshape(h, w, 3)
    return out, depth, kind.reshape(h, w), hit
