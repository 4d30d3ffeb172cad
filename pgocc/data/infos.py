"""mmdet3d-style nuScenes info pickles (``nuscenes_infos_{train,val}_sweep.pkl``, docs/data.md §1.1).

The original orders its samples and picks each keyframe's camera sweeps from these files. pgocc builds its index from
the devkit tables in any case; a pickle, when configured, only says the sample order and the sweeps, and must agree
with the tables on everything else it states. Read here, per entry: ``token``, ``timestamp`` (µs), ``scene_name``
(when present), ``cams[CAM].data_path`` and ``sweeps`` (a list, nearest first, of ``{CAM: {"data_path": …}}``).
A file is ``{"infos": [...], "metadata": {"version": …}}`` (mmdet3d ≤ 0.17, as the original's) or a bare list of
entries. A ``data_path`` may carry any prefix (``./data/nuscenes/samples/CAM_FRONT/x.jpg``): its last three parts
name the image as the ``sample_data`` table does (``samples/CAM_FRONT/x.jpg``).

Pickles can run arbitrary code when loaded; this reader accepts only plain containers and numpy arrays.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from pgocc.data.layout import CAMERAS
from pgocc.errors import DataError

_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
}
"""The only globals an info pickle may reference (the ones mmdet3d's infos contain: numpy arrays and scalars)."""


@dataclass(frozen=True, slots=True)
class InfoSample:
    """One entry of an info pickle, as far as pgocc reads it."""

    token: str
    timestamp: int
    """µs."""
    scene_name: str | None
    """None when the entry has no ``scene_name`` (added by the original's ``gen_add_scene_info``)."""
    cams: dict[str, str]
    """Camera channel → keyframe image path relative to the dataroot."""
    sweeps: list[dict[str, str]]
    """Nearest first: camera channel → sweep image path relative to the dataroot (a camera may be absent)."""


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):  # noqa: ANN201 - pickle's signature
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: an info pickle holds only dicts, lists, "
                                         "strings, numbers and numpy arrays")
        return super().find_class(module, name)


def image_path(data_path: str) -> str:
    """The dataroot-relative image path (``samples/CAM_FRONT/x.jpg``) of an info ``data_path`` with any prefix."""
    return "/".join(PurePosixPath(str(data_path).replace("\\", "/")).parts[-3:])


def read_infos(path: Path, version: str) -> list[InfoSample]:
    """The entries of the info pickle ``path``, in file order.

    Raises DataError naming the file when it is missing or unreadable, holds something other than info entries,
    names another nuScenes version than ``version`` in its metadata, or when an entry lacks a field pgocc reads.
    """
    if not path.is_file():
        raise DataError(f"{path}: info pickle not found")
    try:
        with open(path, "rb") as f:
            data = _SafeUnpickler(f).load()
    except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ValueError, TypeError) as exc:
        raise DataError(f"{path}: not a readable info pickle ({exc})") from exc
    if isinstance(data, dict):
        meta = data.get("metadata") or {}
        if "version" in meta and meta["version"] != version:
            raise DataError(f"{path}: metadata says version {meta['version']!r} but data.version is {version!r}")
        data = data.get("infos")
    if not isinstance(data, list):
        raise DataError(f"{path}: expected {{'infos': [...], 'metadata': {{...}}}} or a list of info entries")
    out = []
    for i, entry in enumerate(data):
        where = f"{path}: entry {i}"
        listed = entry.get("sweeps") if isinstance(entry, dict) else None
        for j, sweep in enumerate(listed if isinstance(listed, list) else []):
            if not isinstance(sweep, dict) or not any(cam in sweep for cam in CAMERAS):
                kind = "a LiDAR sweep" if isinstance(sweep, dict) and "data_path" in sweep else "no camera"
                raise DataError(f"{where}: sweeps[{j}] names {kind}; expected camera sweeps {{CAM: {{data_path: …}}}} "
                                "as in the original's *_sweep.pkl (mmdet3d's own infos list LiDAR sweeps)")
        try:
            cams = {cam: image_path(rec["data_path"]) for cam, rec in entry["cams"].items()}
            sweeps = [{cam: image_path(rec["data_path"]) for cam, rec in sweep.items() if cam in CAMERAS}
                      for sweep in entry["sweeps"]]
            out.append(InfoSample(token=str(entry["token"]), timestamp=int(entry["timestamp"]),
                                  scene_name=str(entry["scene_name"]) if "scene_name" in entry else None,
                                  cams=cams, sweeps=sweeps))
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise DataError(f"{where}: expected token, timestamp, cams[CAM].data_path and sweeps[j][CAM].data_path "
                            f"({type(exc).__name__}: {exc})") from exc
    return out
