"""The nuScenes-format dataset layout shared by the synthetic writer and the loader.

A dataroot holds ``<version>/<table>.json`` (the 13 devkit tables), ``samples/<CHANNEL>/`` and ``sweeps/<CHANNEL>/``
(JPEGs, LiDAR ``.pcd.bin``), ``maps/``, and beside the images the per-image targets: foundation depth and
vision-language features in folders named by :class:`~pgocc.config.DataConfig` (``<name>.npy`` or ``.npz`` where
``<name>`` is the image basename without extension), and Occ3D labels ``<labels_dir>/<scene>/<token>/labels.npz``;
each of these folders may be absolute or lie beside the dataroot (:func:`data_folder`).
"""

from __future__ import annotations

from pathlib import Path, PurePath

CAMERAS: tuple[str, ...] = (
    "CAM_FRONT",
    "CAM_FRONT_RIGHT",
    "CAM_FRONT_LEFT",
    "CAM_BACK",
    "CAM_BACK_LEFT",
    "CAM_BACK_RIGHT",
)
"""The N = 6 cameras in the model's fixed order (docs/model.md §0)."""

LIDAR = "LIDAR_TOP"
"""The channel whose keyframe defines the sample's ego frame and timestamp."""

TABLES: tuple[str, ...] = (
    "attribute",
    "calibrated_sensor",
    "category",
    "ego_pose",
    "instance",
    "log",
    "map",
    "sample",
    "sample_annotation",
    "sample_data",
    "scene",
    "sensor",
    "visibility",
)
"""The 13 JSON tables nuscenes-devkit requires (docs/data.md §1)."""

SPLITS_FILE = "splits.json"
"""Optional ``{split name: [scene names]}`` at the dataroot; without it the devkit's official splits apply."""


def target_stem(image_path: str) -> str:
    """Basename of an image without its extension: the name of its depth and feature files (docs/model.md §7.3)."""
    return PurePath(image_path).name.rsplit(".", 1)[0]


def data_folder(dataroot: Path, folder: str) -> Path:
    """The folder of a dataset part (``data.depth_dir``, ``feature_dir``, ``labels_dir``): ``folder`` itself when
    absolute, else relative to the dataroot, so ``../nuscenes_featup`` is the original's folder beside it."""
    return Path(dataroot) / folder
