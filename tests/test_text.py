"""Text encoders: the Occ3D prompt groups as data, prototype files, the hash fallback and the offline MiniLM."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pgocc.errors import DataError
from pgocc.text import (
    OCC3D_GROUP_LABELS,
    OCC3D_PROMPT_GROUP,
    OCC3D_PROMPT_GROUPS,
    OCC3D_PROMPTS,
    HashEncoder,
    MiniLMEncoder,
    PrototypeEncoder,
    save_prototypes,
    text_encoder,
)


def test_occ3d_prompt_groups_follow_the_specification() -> None:
    assert len(OCC3D_PROMPTS) == 21 and len(OCC3D_PROMPT_GROUPS) == 16
    assert OCC3D_PROMPTS[12:14] == ("terrain", "grass") and OCC3D_PROMPTS[14:19] == (
        "building", "wall", "fence", "pole", "sign")
    assert OCC3D_GROUP_LABELS == tuple(g + 1 + (g > 10) for g in range(16))
    assert 12 not in OCC3D_GROUP_LABELS and 0 not in OCC3D_GROUP_LABELS and OCC3D_GROUP_LABELS[-1] == 17
    assert [OCC3D_PROMPTS[i] for i, g in enumerate(OCC3D_PROMPT_GROUP) if g == 13] == list(OCC3D_PROMPT_GROUPS[13])


def test_hash_encoder_is_deterministic_and_normalised() -> None:
    enc = HashEncoder(dim=64, seed=1)
    a = enc.encode(["car", "tree", "car"])
    assert a.shape == (3, 64) and a.dtype == torch.float32
    torch.testing.assert_close(a.norm(dim=1), torch.ones(3))
    torch.testing.assert_close(a[0], a[2])
    torch.testing.assert_close(HashEncoder(dim=64, seed=1).encode(["tree"])[0], a[1])
    assert abs(float(a[0] @ a[1])) < 0.5
    assert not torch.allclose(HashEncoder(dim=64, seed=2).encode(["car"])[0], a[0])
    assert enc.encode([]).shape == (0, 64)
    with pytest.raises(ValueError, match="dim"):
        HashEncoder(dim=0)


def test_prototype_file_npz_round_trip(tmp_path: Path, seed: int) -> None:
    table = torch.randn(5, 12, generator=torch.Generator().manual_seed(seed))
    prompts = ["car", "road", "a tree", "sky", "person"]
    save_prototypes(tmp_path / "p.npz", prompts, table)
    with np.load(tmp_path / "p.npz") as z:
        assert z["embeds"].shape == (12, 5)  # [D, K] on disk
    enc = text_encoder(str(tmp_path / "p.npz"))
    assert enc.dim == 12
    out = enc.encode(["sky", "car"])
    torch.testing.assert_close(out, torch.nn.functional.normalize(table[[3, 0]], dim=1))
    with pytest.raises(DataError, match=r"p\.npz: no prototype for \['bus'\]"):
        enc.encode(["bus"])


def test_prototype_file_torch_formats(tmp_path: Path) -> None:
    clip_like = torch.randn(32, 21)
    torch.save(clip_like, tmp_path / "text_proto_embeds_clip.pth")
    enc = PrototypeEncoder.from_file(tmp_path / "text_proto_embeds_clip.pth")
    assert enc.prompts == OCC3D_PROMPTS
    torch.testing.assert_close(enc.encode(["car"])[0], torch.nn.functional.normalize(clip_like[:, 3], dim=0))
    torch.save({"embeds": torch.randn(8, 2), "prompts": ["a", "b"]}, tmp_path / "d.pt")
    assert PrototypeEncoder.from_file(tmp_path / "d.pt").encode(["b"]).shape == (1, 8)


@pytest.mark.parametrize("case", ["missing", "bare_shape", "nan", "zero", "npz_keys", "suffix", "count"])
def test_bad_prototype_files(tmp_path: Path, case: str) -> None:
    path = tmp_path / {"suffix": "p.txt", "npz_keys": "p.npz", "count": "p.npz"}.get(case, "p.pt")
    if case == "bare_shape":
        torch.save(torch.randn(8, 5), path)
    elif case == "nan":
        torch.save(torch.full((8, 21), float("nan")), path)
    elif case == "zero":
        torch.save(torch.zeros(8, 21), path)
    elif case == "npz_keys":
        np.savez(path, x=np.ones((2, 2)))
    elif case == "suffix":
        path.write_text("car 0.1 0.2")
    elif case == "count":
        np.savez(path, embeds=np.ones((4, 3)), prompts=np.array(["a", "b"]))
    message = {"missing": "not found", "bare_shape": r"\[D, 21\]", "nan": "NaN", "zero": "all zeros",
               "npz_keys": "'embeds'", "suffix": "unknown prototype file type", "count": "expected 2 embeddings"}
    with pytest.raises(DataError, match=message[case]):
        PrototypeEncoder.from_file(path)


def test_text_encoder_names() -> None:
    assert isinstance(text_encoder("hash"), HashEncoder)
    assert isinstance(text_encoder("minilm"), MiniLMEncoder)
    with pytest.raises(ValueError, match="'bogus'"):
        text_encoder("bogus")


def test_minilm_offline_embeddings() -> None:
    enc = MiniLMEncoder()
    out = enc.encode(["car", "truck", "vegetation", "automobile", "car"])
    assert out.shape == (5, 384) and enc.dim == 384
    torch.testing.assert_close(out.norm(dim=1), torch.ones(5))
    torch.testing.assert_close(out[0], out[4])
    sim = out @ out.T
    assert sim[0, 3] > sim[0, 2] and sim[0, 1] > sim[0, 2]  # synonyms and related classes are closer
