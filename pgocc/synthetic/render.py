"""Camera images of a scene: flat colours with value-noise texture, lane markings, windows, stripes and Lambert
shading from the scene's sun; the sky is a gradient from the horizon to the zenith.

The looks only need to give the photometric loss something to match (texture everywhere, edges at object borders);
the numbers below are chosen by eye. Shading works on float32 arrays with Python-float constants, which keep
float32 (no upcast).
"""

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
SKY_GRADIENT = 3.0
"""The sky reaches its zenith colour where a ray's elevation sine is 1 / SKY_GRADIENT (about 20°)."""

# The ground: light = GROUND_AMBIENT + GROUND_SUN · (sun height), texture at GROUND_TEXELS texels per metre.
GROUND_AMBIENT = 0.6
GROUND_SUN = 0.4
GROUND_TEXELS = 2.0
CENTRE_LINE_HALF_WIDTH = 0.08
DASH_PERIOD = 9.0
DASH_LENGTH = 4.0
EDGE_LINE_INSET = 0.35
"""Metres from the road's edge to the centre of its edge line."""
EDGE_LINE_HALF_WIDTH = 0.07
MARKING_BRIGHTNESS = 0.88
SLAB = 1.5
"""Metres: side of a sidewalk slab; the joints between slabs are JOINT wide and JOINT_SHADE as bright."""
JOINT = 0.05
JOINT_SHADE = 0.78

# Boxes: colour · (BOX_GAIN_MIN + BOX_GAIN_RANGE · texture) · (SHADE_AMBIENT + SHADE_SUN · max(cos(normal, sun), 0)).
BOX_TEXELS = 3.0
BOX_TEXTURE_SHIFT = 37.0
"""Texels between consecutive boxes' texture origins, so that neighbouring boxes do not look alike."""
BOX_GAIN_MIN = 0.7
BOX_GAIN_RANGE = 0.6
SHADE_AMBIENT = 0.55
SHADE_SUN = 0.45
_WINDOW_COLOR = np.array([0.22, 0.28, 0.36], np.float32)
WINDOW_TEXTURE = 0.15
"""How much the texture brightens a window (reflections)."""
FACADE_SHIFT = 50.0
"""Metres added to the facade coordinate before the window grid's modulo, so it is positive on every face."""
WINDOW_BAY = 3.2
WINDOW_ALONG = (1.1, 2.5)
"""Span of a window within its bay along the facade."""
STOREY = 3.4
WINDOW_UP = (1.2, 2.6)
"""Span of a window within its storey."""
CONE_BAND_HEIGHT = 0.45
CONE_BAND_HALF_WIDTH = 0.08
CONE_BAND_BRIGHTNESS = 0.95
_BARRIER_STRIPE = np.array([0.85, 0.12, 0.10], np.float32)
STRIPE_SHIFT = 10.0
STRIPE_PERIOD = 1.0
STRIPE_FRACTION = 0.5


def _shade_sky(rgb: np.ndarray, idx: np.ndarray, dirs: list[np.ndarray]) -> None:
    """Sky colours of the pixels ``idx`` (flat) of ``rgb`` [3, H·W] with ray directions ``dirs`` (3 × [H·W])."""
    dx, dy, dz = (d[idx] for d in dirs)
    mix = np.clip(SKY_GRADIENT * dz / np.sqrt(dx * dx + dy * dy + dz * dz), 0.0, 1.0)
    for ch in range(3):
        rgb[ch, idx] = (1 - mix) * _SKY_HORIZON[ch] + mix * _SKY_ZENITH[ch]


def _shade_ground(scene: Scene, rgb: np.ndarray, kind: np.ndarray, idx: np.ndarray, origin: list[float],
                  t: np.ndarray, dirs: list[np.ndarray]) -> None:
    """Ground colours and kinds of the pixels ``idx`` whose rays ``origin + t·dirs`` hit the ground."""
    tt = t[idx]
    px, py = origin[0] + tt * dirs[0][idx], origin[1] + tt * dirs[1][idx]
    gk = scene.ground_kind(px, py)
    kind[idx] = gk
    a, b = scene.global_to_street(px, py)
    strength = _TEXTURE_STRENGTH[gk]
    light = np.float32(GROUND_AMBIENT + GROUND_SUN * scene.sun[2])
    tex = sample_texture(scene.texture, a * GROUND_TEXELS, b * GROUND_TEXELS)
    gain = (1.0 - 0.5 * strength + strength * tex) * light  # the texture varies the colour around its base value
    in_cross = np.zeros(a.shape, bool)
    for ac, hw in scene.street.crossings:
        in_cross |= np.abs(a - float(ac)) < hw
    marking = (np.abs(b) < CENTRE_LINE_HALF_WIDTH) & (np.mod(a, DASH_PERIOD) < DASH_LENGTH)
    marking |= np.abs(np.abs(b) - (scene.street.road_half - EDGE_LINE_INSET)) < EDGE_LINE_HALF_WIDTH
    marking &= (gk == K["road"]) & ~in_cross
    joints = (gk == K["sidewalk"]) & ((np.mod(a, SLAB) < JOINT) | (np.mod(b, SLAB) < JOINT))
    gain = np.where(joints, JOINT_SHADE * gain, gain)
    paint = np.float32(MARKING_BRIGHTNESS * (GROUND_AMBIENT + GROUND_SUN * scene.sun[2]))
    for ch in range(3):
        rgb[ch, idx] = np.where(marking, paint, _KIND_COLORS[gk, ch] * gain)


def _shade_boxes(scene: Scene, rgb: np.ndarray, kind: np.ndarray, idx: np.ndarray, origin: list[float],
                 t: np.ndarray, hit: np.ndarray, face: np.ndarray, dirs: list[np.ndarray], t_us: int) -> None:
    """Colours and kinds of the pixels ``idx`` whose rays ``origin + t·dirs`` enter box ``hit`` through ``face``."""
    m = hit[idx]
    bk = scene.boxes.kind[m]
    kind[idx] = bk
    f = face[idx]
    tt = t[idx]
    dx, dy, dz = (d[idx] for d in dirs)
    px, py, pz = origin[0] + tt * dx, origin[1] + tt * dy, origin[2] + tt * dz
    centres, yaws = scene.box_poses(t_us)
    c, s = np.cos(yaws).astype(np.float32)[m], np.sin(yaws).astype(np.float32)[m]
    rx, ry = px - centres[:, 0].astype(np.float32)[m], py - centres[:, 1].astype(np.float32)[m]
    lx, ly = c * rx + s * ry, -s * rx + c * ry
    # Texture coordinates on the entered face: (along the face, up) for side faces, (x, y) on top.
    p = np.where(f == 0, ly, lx)
    q = np.where(f == 2, ly, pz)
    tex = sample_texture(scene.texture, p * BOX_TEXELS + m.astype(np.float32) * BOX_TEXTURE_SHIFT, q * BOX_TEXELS)
    gain = BOX_GAIN_MIN + BOX_GAIN_RANGE * tex
    vertical = f != 2
    pw, zw = np.mod(p + FACADE_SHIFT, WINDOW_BAY), np.mod(pz, STOREY)
    windows = ((bk == K["building"]) & vertical & (pw > WINDOW_ALONG[0]) & (pw < WINDOW_ALONG[1])
               & (zw > WINDOW_UP[0]) & (zw < WINDOW_UP[1]))
    band = (bk == K["traffic_cone"]) & (np.abs(pz - CONE_BAND_HEIGHT) < CONE_BAND_HALF_WIDTH)
    stripes = (bk == K["barrier"]) & vertical & (np.mod(p + STRIPE_SHIFT, STRIPE_PERIOD) < STRIPE_FRACTION)
    # Lambert shading with the world-frame normal of the entered face (it points against the ray).
    sun = [float(x) for x in scene.sun]
    d_face = np.where(f == 0, c * dx + s * dy, np.where(f == 1, -s * dx + c * dy, dz))
    lam = np.where(f == 0, c * sun[0] + s * sun[1], np.where(f == 1, -s * sun[0] + c * sun[1], sun[2]))
    shade = SHADE_AMBIENT + SHADE_SUN * np.maximum(-np.sign(d_face) * lam, 0.0)
    colors = scene.boxes.color.astype(np.float32)
    for ch in range(3):
        col = colors[m, ch] * gain
        col = np.where(windows, _WINDOW_COLOR[ch] + WINDOW_TEXTURE * tex, col)
        col = np.where(band, np.float32(CONE_BAND_BRIGHTNESS), col)
        col = np.where(stripes, _BARRIER_STRIPE[ch], col)
        rgb[ch, idx] = col * shade


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
    flat_dirs = [np.ascontiguousarray(dirs[..., i]).reshape(-1) for i in range(3)]
    rgb = np.empty((3, h * w), np.float32)
    kind = np.full(h * w, SKY, np.int64)
    _shade_sky(rgb, np.flatnonzero(flat_hit == -2), flat_dirs)
    ground = np.flatnonzero(flat_hit == -1)
    if len(ground):
        _shade_ground(scene, rgb, kind, ground, origin, flat_t, flat_dirs)
    boxes = np.flatnonzero(flat_hit >= 0)
    if len(boxes):
        _shade_boxes(scene, rgb, kind, boxes, origin, flat_t, flat_hit, face.reshape(-1), flat_dirs, t_us)
    out = (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8).T.reshape(h, w, 3)
    return out, depth, kind.reshape(h, w), hit
