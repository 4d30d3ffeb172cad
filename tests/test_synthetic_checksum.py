"""The synthetic world is a pure function of its spec: a tiny world's bytes match digests recorded from the generator.

The digests were recorded from the generator as it stood at commit f18edc5, before it moved out of ``pgocc/data/``
into ``pgocc/synthetic/``. A change to the generator that alters any random draw, the draws' order, a constant, the
order of a float operation or a written field fails here, and the failing groups name the parts of the world that
changed (only ``gts`` when the labels changed, every group when a random draw moved).

What the digests cover, and what they deliberately leave out:

- every file's path relative to the output folder and its contents, grouped by the first folder under the dataroot
  (``samples``, ``sweeps``, ``depth``, ``gts``, ``v1.0-synthetic``, …) or the file name for files at the top;
- JPEG images as their raw pixels: the test replaces the JPEG encoder by a raw writer, because the encoded bytes
  depend on the codec (libjpeg-turbo or the Pillow fallback) rather than on the world;
- ``.npz`` archives as their arrays (name, dtype, shape, bytes): the deflate stream depends on the zlib build.

The values themselves come from numpy's float maths; the digests hold for the pinned numpy
(``scripts/constraints-cpu.txt``) on x86-64. When a numpy upgrade changes them, re-record with
``python tests/test_synthetic_checksum.py`` after checking that the generator did not change.
"""

from __future__ import annotations

import hashlib
import io
import sys
from pathlib import Path, PurePosixPath

import numpy as np
import pytest

import pgocc.synthetic.writer as writer
from pgocc.synthetic.writer import WorldSpec, make_synthetic

SPEC = WorldSpec(seed=3, scenes=1, keyframes=2, sweeps=1, width=64, height=48, text_encoder="hash")
"""One scene, two keyframes and one sweep between them at 64×48 pixels: about 5 s on one core."""

EXPECTED: dict[str, dict[str, str]] = {
    "pgocc": {
        "depth": "5962d2296b5eba663b2ade5b4c35cea0c227df91336107b4555b5bb6a9e01cd7",
        "features": "e4416a16397a85394119519a0cdd5bfd727c109fb59c711859df01b3bb8fd2d2",
        "gts": "1c13e57e663a71eedacc5c8495e10c45f7402a11151abe6806bf67d415f878c7",
        "maps": "e12aa49f192969cbbb35d69f205c3d2772df005b9a54a9ba9c9c5681225f5a4d",
        "samples": "c575d778a42309c3ae48b377593fd9ca3b37464083284b6b6b26a888538bb414",
        "splits.json": "f70d34653322d6a715c93736f1b81dade3253c9d1003ad4f4f6aa6a2114bcc22",
        "sweeps": "804cfbafe80d17e5995c9a771b7bfb9e69525317a01e126f494823a09384b606",
        "text_prototypes.npz": "fd00ef52070527140884d7b43ac250cac848494266b2a652ed278bd3170207f7",
        "v1.0-synthetic": "b7673f4a392776eed87b33b195a9fc49c93c60382cfbc19e30632b19e1b6bf68",
        "world.json": "95d8a9106cb9177efba709e5ab4d22313047dda1be0bf8da8c88feb0cc7cf26c",
    },
    "original": {
        "gts": "3cc6701c904b042f5826cf6fafbc9532567fb69978e7f48ccd31670eca7392c3",
        "maps": "021d80652f23ac403332c7cbccac1bd24113b07ce83896fbabee32c9e2347f1c",
        "nuscenes_featup": "886b8d5755259da4dd95ab69a0277ca00a4310e15286e94e1479d759b7d6c7a2",
        "nuscenes_infos_train_sweep.pkl": "10dfcf652a6f0a58947c0981e94383af0f0685da26a485290ea2e3480c0c512f",
        "nuscenes_infos_val_sweep.pkl": "3a0391f58cc6bc5c403de712fb4dde431ecf216b181aaa43e7b9b2665d9f81d2",
        "nuscenes_metric3d": "0cf83958858db3bf382d7fa425a3f6e67086e75b029fc6fdcb1e3397552b1edf",
        "samples": "85e5c6685c919faef89a5cab00589cd64f6cd5a666b164bfa791f8c6c2a21bd2",
        "splits.json": "22876a46ff795a171c416276de13493c16155c40d6706f530700f38be8ac7a9c",
        "sweeps": "5f0096d64f80215c2f40a2ff99e99f7fdbc9003b67c7e2029189044baa302713",
        "text_prototypes.npz": "5be409c3e0e12a391ccc61e076df81aebeedd978595e8ca0029ecc9edda44278",
        "v1.0-synthetic": "18b28c74e4c72d3fb380bbc1b1ab77f7c80bd7c27204a0a7dd694d5ed13e4f79",
        "world.json": "4c847b2aff81f1e37a5d699cebb450307b2cccb6404d10c9479f114ca4df97ee",
    },
}
"""Layout → group → sha256 of the group's files, recorded before the generator's move."""


def _write_raw_image(rgb: np.ndarray, path: Path) -> None:
    """Stand-in for the JPEG encoder: the pixels with their shape, so the digest does not depend on the codec."""
    path.write_bytes(repr(rgb.shape).encode() + rgb.tobytes())


def _content(path: Path) -> bytes:
    """The bytes that stand for ``path`` in the digest (an .npz archive's arrays, else the file's bytes)."""
    if path.suffix != ".npz":
        return path.read_bytes()
    out = io.BytesIO()
    with np.load(path) as archive:
        for name in sorted(archive.files):
            array = archive[name]
            out.write(f"{name} {array.dtype.str} {array.shape}\0".encode())
            out.write(np.ascontiguousarray(array).tobytes())
    return out.getvalue()


def _group(rel: PurePosixPath, dataroot: str) -> str:
    """The folder (below the dataroot, or beside it for the original's target folders) or top file of ``rel``."""
    parts = rel.parts[1:] if dataroot != "." and rel.parts[0] == dataroot else rel.parts
    return parts[0]


def world_digests(out: Path, layout: str) -> dict[str, str]:
    """group → sha256 over the sorted relative paths and contents of the group's files in the world at ``out``."""
    hashes: dict[str, hashlib._Hash] = {}
    dataroot = writer.LAYOUTS[layout].dataroot
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        rel = PurePosixPath(path.relative_to(out).as_posix())
        h = hashes.setdefault(_group(rel, dataroot), hashlib.sha256())
        h.update(str(rel).encode() + b"\0" + _content(path) + b"\0")
    return {group: h.hexdigest() for group, h in sorted(hashes.items())}


def make_world(out: Path, layout: str) -> dict[str, str]:
    """Write the tiny world in ``layout`` to ``out`` (one process, raw images) and return its digests."""
    original = writer.encode_jpeg
    writer.encode_jpeg = _write_raw_image
    try:
        make_synthetic(out, SPEC, jobs=1, layout=layout)
    finally:
        writer.encode_jpeg = original
    return world_digests(out, layout)


@pytest.mark.parametrize("layout", ["pgocc", "original"])
def test_tiny_world_matches_recorded_digests(tmp_path: Path, layout: str) -> None:
    got = make_world(tmp_path / "world", layout)
    changed = sorted(g for g in got.keys() | EXPECTED[layout].keys() if got.get(g) != EXPECTED[layout].get(g))
    assert not changed, f"{layout} layout: these parts of the world changed: {', '.join(changed)}"


if __name__ == "__main__":
    # Print the digests of a fresh world (to re-record EXPECTED after a deliberate change or a numpy upgrade).
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        for name in ("pgocc", "original"):
            print(f"{name!r}: {make_world(Path(tmp) / name, name)!r},", file=sys.stdout)
