"""Per-image target files: foundation depth and vision-language features (docs/data.md §3).

One file per keyframe image, ``<folder>/<image stem>.npy`` or ``.npz`` (``<image stem>``: the image basename without
extension, :func:`~pgocc.data.layout.target_stem`): depth [H, W] in metres, features [D, h, w]; float16 or float32.
The loader (:mod:`pgocc.data.dataset`), ``pgocc check-data`` and ``pgocc prepare-targets`` read and validate them
through the functions here, and the latter writes them with :func:`write_target` (atomically).
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from pgocc.errors import DataError

DEPTH = "depth"
"""Name of the depth array in an ``.npz`` target (an ``.npz`` holding a single array may name it anything)."""
FEATURES = "features"
"""Name of the feature array in an ``.npz`` target."""
NUMPY_STARTS = {".npy": b"\x93NUMPY", ".npz": b"PK\x03\x04"}
"""First bytes of a NumPy ``.npy`` file and of an ``.npz`` (a zip archive)."""
TEMP_MARK = ".partial-"
"""Part of the name of a target being written (``.<name>.partial-<pid>``); such files are never read as targets."""


def target_file(folder: Path, stem: str) -> Path | None:
    """The existing ``folder/stem.npy`` (preferred) or ``folder/stem.npz``, else None."""
    for path in (folder / f"{stem}.npy", folder / f"{stem}.npz"):
        if path.is_file():
            return path
    return None


def read_target(folder: Path, stem: str, what: str) -> tuple[np.ndarray, Path]:
    """``folder/stem.npy``, or the ``what`` array (or only array) of ``folder/stem.npz``, and the file read.

    Raises DataError naming the file when neither exists or the file cannot be read.
    """
    path = target_file(folder, stem)
    if path is None:
        raise DataError(f"{folder / f'{stem}.npy'}: {what} file not found (also looked for {stem}.npz)")
    # np.load takes a file without the NumPy header for a pickle and blames "pickled (object) data"; say instead what
    # the file is not.
    start = NUMPY_STARTS[path.suffix]
    with open(path, "rb") as f:
        head = f.read(len(start))
    if head != start:
        raise DataError(f"{path}: not a NumPy {path.suffix} file (it starts with {head!r}, not {start!r}); expected "
                        f"the {what} array")
    try:
        if path.suffix == ".npy":
            return np.load(path, allow_pickle=False), path
        with np.load(path, allow_pickle=False) as z:
            if what in z.files:
                return z[what], path
            if len(z.files) == 1:
                return z[z.files[0]], path
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: corrupt or truncated {what} file ({exc})") from exc
    raise DataError(f"{path}: expected an array named {what!r} or a single array, got {z.files}")


def check_finite(array: np.ndarray, path: Path, what: str) -> None:
    """Raise DataError naming ``path`` if ``array`` (the ``what`` read from it) holds NaN or infinite values."""
    if not np.isfinite(array).all():
        raise DataError(f"{path}: {what} contains NaN or infinite values")


def check_depth(depth: np.ndarray, path: Path) -> np.ndarray:
    """The [H, W] depth map of ``depth`` ([H, W] or [1, H, W], float) as read from ``path``.

    Raises DataError naming ``path`` for another shape or dtype, NaN or infinite values, or negative values (0 is
    allowed: "no depth").
    """
    if depth.ndim == 3 and depth.shape[0] == 1:
        depth = depth[0]
    if depth.ndim != 2 or min(depth.shape) < 2 or depth.dtype.kind != "f":
        raise DataError(f"{path}: depth must be a float [H, W] map, got {depth.dtype} {depth.shape}")
    check_finite(depth, path, "depth (expected finite metres)")
    if (depth < 0).any():
        raise DataError(f"{path}: depth contains negative values (min {float(depth.min()):.3g}); expected >= 0")
    return depth


def check_feature_shape(features: np.ndarray, path: Path, dim: int | None) -> None:
    """Raise DataError naming ``path`` unless ``features`` is a float [D, h, w] map (D = ``dim`` when given)."""
    if features.ndim != 3 or features.dtype.kind != "f" or (dim is not None and features.shape[0] != dim):
        expected = f"[{dim if dim is not None else 'D'}, h, w]"
        raise DataError(f"{path}: feature map must be float {expected}, got {features.dtype} {features.shape}")


def write_target(path: Path, array: np.ndarray) -> None:
    """Write ``array`` to ``path`` (``.npy``) atomically: to a temporary name in the same folder, then renamed, so
    a reader or a resumed run sees the whole file or none."""
    tmp = path.with_name(f".{path.name}{TEMP_MARK}{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            np.save(f, array, allow_pickle=False)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def remove_partial(folder: Path) -> int:
    """Delete the temporary files a killed writer left in ``folder``; returns how many there were."""
    stale = [p for p in folder.glob(f".*{TEMP_MARK}*") if p.is_file()] if folder.is_dir() else []
    for p in stale:
        p.unlink()
    return len(stale)
