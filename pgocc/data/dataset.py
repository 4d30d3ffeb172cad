"""The sample loader: one :class:`~pgocc.data.batch.Batch` (B = 1) per keyframe, assembled as docs/model.md §1.1,
§1.4, §5.1 and §7 describe, from any nuScenes-format dataset (real nuScenes + Occ3D, or the synthetic world).

Per sample:
- T frames × N cameras: frame 0 is the keyframe; frames 1..T−1 come from the sample's *prev list* (its camera
  sweeps nearest first, then the previous keyframe, its sweeps, … back to the scene start). Training draws a random
  stride k ∈ [min(lo, m), min(hi, m)] with m = ⌊len/(T−1)⌋ and takes entries k−1, 2k−1, …; with at most T−1 entries
  it takes them all and repeats the oldest (the current keyframe when there is none). Test (and online) takes the
  T−1 previous keyframes, repeating the scene's first keyframe where the history is shorter. A camera missing from a
  sweep is replaced by that camera's entry just before it in the list (the newer one; the keyframe for the first),
  with a one-time warning (§7.1's fallback, without its index −1 wrap-around).
- images: JPEG decoded at the smallest libjpeg-turbo scale that covers the network size, resized (bicubic) and
  cropped by :class:`~pgocc.data.geometry.ImageTransform` (derived from each image's own size).
- ``ego2img = IDA · K · inverse(cam2global) · ego2global_keyframe``: every image (past ones too) is projected from
  the current ego frame through the global poses, so ego motion is compensated; ``lidar2img = ego2img · lidar2ego``.
- foundation depth and features of the N current cameras, ``<dir>/<image stem>.npy`` (or ``.npz``, float16 allowed);
  depth is resampled corner-aligned bilinear to the render size (``scipy.ndimage.zoom(order=1)`` semantics).
- ``render_gt`` (LANCZOS to the render size) of the current images and of each camera's frame just before and just
  after; ``t0_2_x_geo`` from the cameras' global poses; at a scene's ends the current image and the identity stand
  in, and ``source_valid`` says so (the photometric loss leaves such a source out). Inference without pictures
  builds the dataset with ``with_render=False``: no render image is decoded or resized (``render_gt`` is None),
  which about halves the loader's time per image (one resize instead of two; the training mode refuses it).
- Occ3D labels ``<labels_dir>/<scene>/<token>/labels.npz`` when ``with_labels``.

Mode ``online`` is test as a car runs it (docs/performance.md §1): only the N current images are decoded (``images``
[1, N, …], ``render_gt`` the N current render images); the past frames keep their file names, poses and image
transforms (from the index, no decoding), and the model takes their features from its FeatureCache, filled while
the earlier keyframes of the scene were processed — so samples must come in order from a scene's first keyframe.
No feature targets are read (``features`` is None); depth, labels and the pose-only ``t0_2_x_geo`` are as in test.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from PIL import Image

from pgocc.data.batch import Batch
from pgocc.data.geometry import ImageTransform, invert_rigid, pad_intrinsic, render_intrinsics
from pgocc.data.index import DatasetIndex, build_index
from pgocc.data.jpeg import decode_scaled
from pgocc.data.layout import CAMERAS, data_folder, target_stem
from pgocc.data.notices import warn_once
from pgocc.data.occ3d import load_labels
from pgocc.data.targets import DEPTH, FEATURES, check_depth, check_feature_shape, check_finite, read_target
from pgocc.errors import DataError

if TYPE_CHECKING:
    from pgocc.config import DataConfig

Mode = Literal["train", "test", "online"]


def resample_depth(depth: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Corner-aligned bilinear resampling of [h, w] depth to ``size`` (output i ↦ input i·(h−1)/(H−1))."""
    t = torch.from_numpy(np.ascontiguousarray(depth, dtype=np.float32))[None, None]
    return F.interpolate(t, size=size, mode="bilinear", align_corners=True)[0, 0].numpy()


class OccDataset(torch.utils.data.Dataset):
    """Samples of a :class:`DatasetIndex` as single-sample :class:`Batch` es (see the module docstring)."""

    def __init__(self, index: DatasetIndex, *, num_frames: int, mode: Mode, input_size: tuple[int, int] = (256, 704),
                 render_size: tuple[int, int] = (180, 320), feature_dim: int | None = None,
                 depth_dir: str = "depth", feature_dir: str = "features", labels_dir: str = "gts",
                 with_labels: bool = True, train_stride: tuple[int, int] = (4, 8), with_render: bool = True) -> None:
        if num_frames < 1:
            raise ValueError(f"OccDataset: num_frames must be >= 1, got {num_frames}")
        if mode not in ("train", "test", "online"):
            raise ValueError(f"OccDataset: mode must be 'train', 'test' or 'online', got {mode!r}")
        self.index = index
        self.num_frames = num_frames
        self.mode = mode
        self.input_size = tuple(input_size)
        self.render_size = tuple(render_size)
        self.feature_dim = feature_dim
        root = index.dataroot
        self.depth_dir = data_folder(root, depth_dir)
        self.feature_dir = data_folder(root, feature_dir)
        self.labels_dir = data_folder(root, labels_dir)
        self.with_labels = with_labels
        self.train_stride = train_stride
        if mode == "train" and not with_render:
            raise ValueError("OccDataset: mode 'train' needs the render images (with_render=True): they are the "
                             "photometric loss's targets")
        self.with_render = with_render

    def __len__(self) -> int:
        return len(self.index)

    # ---- temporal selection ---------------------------------------------------------------------------------------

    def prev_list(self, i: int, length: int) -> np.ndarray:
        """[min(length, history), N] the first entries of sample ``i``'s prev list, missing cameras filled in."""
        ix = self.index
        rows: list[np.ndarray] = []
        s, first = i, True
        while len(rows) < length and s >= 0:
            if not first:
                rows.append(ix.cams[s])
            rows.extend(ix.sweeps[ix.sweep_start[s]:ix.sweep_start[s + 1]])
            s, first = ix.prev_sample[s], False
        out = np.array(rows[:length], np.int64).reshape(-1, len(CAMERAS))
        newer = ix.cams[i]
        for j in range(len(out)):
            missing = out[j] < 0
            if missing.any():
                warn_once("sweep-missing-camera",
                          f"sample {ix.sample_token[i]}: camera(s) "
                          f"{[CAMERAS[n] for n in np.flatnonzero(missing)]} missing from sweep {j} of the prev list; "
                          "using each camera's newer frame instead (further cases are not reported)")
                out[j, missing] = newer[missing]
            newer = out[j]
        return out

    def past_frames(self, i: int) -> np.ndarray:
        """[T−1, N] frames of the past time steps of sample ``i`` (train: random stride from torch's generator,
        seeded per DataLoader worker; test and online: keyframes)."""
        ix = self.index
        need = self.num_frames - 1
        if need == 0:
            return np.zeros((0, len(CAMERAS)), np.int64)
        if self.mode != "train":
            rows, s = [], i
            for _ in range(need):
                s = ix.prev_sample[s] if ix.prev_sample[s] >= 0 else s
                rows.append(ix.cams[s])
            return np.stack(rows)
        length = int(ix.history[i])
        if length <= need:
            entries = self.prev_list(i, length)
            oldest = entries[-1] if length else ix.cams[i]
            return np.concatenate([entries, np.repeat(oldest[None], need - length, 0)])
        m = length // need
        lo, hi = min(self.train_stride[0], m), min(self.train_stride[1], m)
        k = int(torch.randint(lo, hi + 1, (1,)))
        entries = self.prev_list(i, need * k)
        return entries[k - 1::k][:need]

    # ---- loading ----------------------------------------------------------------------------------------------

    def _transform(self, f: int) -> tuple[Path, tuple[int, int], ImageTransform]:
        """Path, (height, width) and network-input transform of frame ``f``, from the index alone."""
        path = self.index.dataroot / str(self.index.frame_path[f])
        size = (int(self.index.frame_size[f, 0]), int(self.index.frame_size[f, 1]))
        return path, size, ImageTransform.fit(size, self.input_size, where=str(path))

    def _image(self, f: int, *, net_out: np.ndarray | None, render: bool) -> tuple[np.ndarray | None, np.ndarray]:
        """Load frame ``f``: the network image is written to ``net_out`` [3, H_in, W_in] (uint8 BGR) when given;
        returns the render image [H_r, W_r, 3] (uint8 BGR) if ``render``, and the [4, 4] image-transform matrix."""
        path, size, tf = self._transform(f)
        net = net_out is not None
        need = (max(tf.resized_size[0] if net else 0, self.render_size[0] if render else 0),
                max(tf.resized_size[1] if net else 0, self.render_size[1] if render else 0))
        img, full = decode_scaled(path, need)
        if full != size:
            raise DataError(f"{path}: image is {full[1]}×{full[0]} but sample_data.json says {size[1]}×{size[0]}")
        pil = Image.fromarray(img)
        render_img = None
        if net:
            top, (out_h, out_w) = tf.crop_top, self.input_size
            if img.shape[:2] == tf.resized_size:
                crop = img[top:top + out_h]
            else:
                # Resize the decoded image to the transform's resized size and crop, in one resampling pass.
                sy = tf.resized_size[0] / img.shape[0]
                crop = np.asarray(pil.resize((out_w, out_h), Image.Resampling.BICUBIC,
                                             box=(0.0, top / sy, float(img.shape[1]), (top + out_h) / sy)))
            np.copyto(net_out, crop.transpose(2, 0, 1))
        if render:
            render_img = np.asarray(pil.resize(self.render_size[::-1], Image.Resampling.LANCZOS))
        return render_img, tf.matrix

    def _depth(self, f: int) -> np.ndarray:
        depth, path = read_target(self.depth_dir, target_stem(str(self.index.frame_path[f])), DEPTH)
        depth = torch.empty(depth.shape).copy_(torch.from_numpy(depth)).numpy() if depth.dtype.kind == "f" else depth
        return resample_depth(check_depth(depth, path), self.render_size)  # float16 → float32 above: fast in torch

    def _features(self, frames: np.ndarray) -> np.ndarray:
        """[N, D, h, w] float32 feature maps of the current cameras ``frames`` [N]."""
        out = None
        for n, f in enumerate(frames):
            feats, path = read_target(self.feature_dir, target_stem(str(self.index.frame_path[f])), FEATURES)
            check_feature_shape(feats, path, self.feature_dim)
            if out is None:
                out = np.empty((len(frames), *feats.shape), np.float32)
            elif feats.shape != out.shape[1:]:
                raise DataError(f"{path}: feature map of shape {feats.shape} differs from the other cameras' "
                                f"{out.shape[1:]}; expected one [D, h, w] for all cameras of a sample")
            torch.from_numpy(out[n]).copy_(torch.from_numpy(feats))  # torch casts float16 ~15× faster than numpy
            check_finite(out[n], path, "feature map")
        return out

    def __getitem__(self, i: int) -> Batch:
        ix = self.index
        n_cam = len(CAMERAS)
        frames = np.concatenate([ix.cams[i][None], self.past_frames(i)])  # [T, N]
        flat = frames.reshape(-1)
        online = self.mode == "online"

        images = np.empty((n_cam if online else len(flat), 3, *self.input_size), np.uint8)
        idas, render_cur = [], []
        for k, f in enumerate(flat):
            if k >= len(images):  # online: a past frame's features come from the model's cache
                idas.append(self._transform(int(f))[2].matrix)
                continue
            render_img, ida = self._image(int(f), net_out=images[k], render=self.with_render and k < n_cam)
            idas.append(ida)
            if k < n_cam:
                render_cur.append(render_img)

        cam2global = ix.cam2global(flat)  # [T·N, 4, 4]
        k4 = np.stack([pad_intrinsic(ix.calib_k[c]) for c in ix.frame_calib[flat]])
        ego2img = np.stack(idas) @ k4 @ invert_rigid(cam2global) @ ix.ego2global[i]
        lidar2img = ego2img @ ix.lidar2ego[i]
        ego2lidar = invert_rigid(ix.lidar2ego[i])

        cur = ix.cams[i]
        cam2ego = ix.calib_cam2ego[ix.frame_calib[cur]]
        render_k = np.stack([render_intrinsics(ix.calib_k[ix.frame_calib[f]], tuple(ix.frame_size[f]),
                                               self.render_size) for f in cur])
        depth = np.stack([self._depth(int(f)) for f in cur])[:, None]
        feats = None if online else torch.from_numpy(self._features(cur))[None]

        # The neighbouring sweeps' render images: the photometric loss's sources (not in online mode).
        adjacent = not online and self.with_render
        render_adj, geo, source_valid = [], [], []
        for neighbours in (ix.prev_cam[i], ix.next_cam[i]):
            for n, f in enumerate(neighbours):
                source_valid.append(f >= 0)
                if f < 0:
                    if adjacent:
                        render_adj.append(render_cur[n])
                    geo.append(np.eye(4))
                else:
                    if adjacent:
                        render_adj.append(self._image(int(f), net_out=None, render=True)[0])
                    geo.append(invert_rigid(ix.cam2global(f)) @ cam2global[n])

        semantics = mask_camera = mask_lidar = None
        if self.with_labels:
            sem, m_lidar, m_camera = load_labels(self.labels_dir / str(ix.scene_name[i]) / str(ix.sample_token[i])
                                                 / "labels.npz")
            semantics, mask_lidar, mask_camera = (torch.from_numpy(a)[None] for a in (sem, m_lidar, m_camera))

        def f32(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[None]

        return Batch(
            images=torch.from_numpy(images)[None],
            lidar2img=f32(lidar2img), ego2img=f32(ego2img), ego2lidar=f32(ego2lidar), cam2ego=f32(cam2ego),
            render_k=f32(render_k), depth=f32(depth), features=feats,
            render_gt=(torch.from_numpy(np.stack(render_cur if online else render_cur + render_adj))[None]
                       if self.with_render else None),
            t0_2_x_geo=f32(np.stack(geo)),
            source_valid=torch.tensor(source_valid, dtype=torch.bool)[None],
            timestamps=torch.from_numpy(ix.frame_time[flat])[None],
            semantics=semantics, mask_camera=mask_camera, mask_lidar=mask_lidar,
            sample_tokens=[str(ix.sample_token[i])], scene_names=[str(ix.scene_name[i])],
            filenames=[[str(ix.frame_path[f]) for f in flat]],
        )


def collate(samples: list[Batch]) -> Batch:
    """Concatenate single-sample (or any-size) batches along B; label fields must be present in all or none."""
    if not samples:
        raise ValueError("collate: no samples")
    values = {}
    for name in Batch.__slots__:
        items = [getattr(s, name) for s in samples]
        if isinstance(items[0], list):
            values[name] = [x for item in items for x in item]
        elif any(x is None for x in items):
            if not all(x is None for x in items):
                raise ValueError(f"collate: {name} is missing in some samples but not in others")
            values[name] = None
        else:
            values[name] = torch.cat(items)
    return Batch(**values)


def _worker_init(worker_id: int) -> None:
    del worker_id
    # One thread per worker: parallelism comes from the workers; nested threads would oversubscribe the cores.
    torch.set_num_threads(1)


def make_loader(dataset: OccDataset, cfg: DataConfig, *, shuffle: bool,
                sampler: torch.utils.data.Sampler | None = None, drop_last: bool = False,
                generator: torch.Generator | None = None) -> torch.utils.data.DataLoader:
    """A DataLoader of collated :class:`Batch` es with ``cfg.batch_size`` samples and ``cfg.num_workers`` persistent
    workers (one torch thread each); memory is pinned when CUDA is present."""
    return torch.utils.data.DataLoader(
        dataset, batch_size=cfg.batch_size, shuffle=shuffle if sampler is None else False, sampler=sampler,
        num_workers=cfg.num_workers, collate_fn=collate, pin_memory=torch.cuda.is_available(), drop_last=drop_last,
        worker_init_fn=_worker_init, persistent_workers=cfg.num_workers > 0, generator=generator,
    )


def build_dataset(cfg: DataConfig, split: str, *, num_frames: int, feature_dim: int | None, mode: Mode,
                  with_render: bool = True) -> OccDataset:
    """The dataset of ``split`` ('train', 'val', …, or 'all') as configured by ``cfg`` (the ``data`` section); the
    info pickle ``cfg.train_infos`` applies to ``cfg.train_split``, ``cfg.val_infos`` to ``cfg.val_split``.
    ``with_render=False`` (inference without pictures) skips the render images (``Batch.render_gt`` is None)."""
    infos = {cfg.train_split: cfg.train_infos, cfg.val_split: cfg.val_infos}.get(split, "")
    index = build_index(cfg.dataroot, cfg.version, split,
                        infos=data_folder(Path(cfg.dataroot), infos) if infos else None)
    return OccDataset(index, num_frames=num_frames, mode=mode, input_size=cfg.input_size,
                      render_size=cfg.render_size, feature_dim=feature_dim, depth_dir=cfg.depth_dir,
                      feature_dir=cfg.feature_dir, labels_dir=cfg.labels_dir, with_labels=cfg.with_labels,
                      train_stride=cfg.train_stride, with_render=with_render)
