"""``pgocc query`` (any text on one sample), ``pgocc text-prototypes`` (the 21-prompt table from an encoder) and the
CLIP text encoder (randomly initialised where open-clip-torch imports; its one-line refusal where it does not)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from pgocc.cli import main
from pgocc.text import OCC3D_PROMPTS, HashEncoder, PrototypeEncoder
from pgocc.text.clip import CLIP_TEMPLATES
from tests.data_fixtures import tiny_world  # noqa: F401
from tests.test_infer import SETS, checkpoint  # noqa: F401

OPEN_CLIP = importlib.util.find_spec("open_clip") is not None


def _query(world: Path, ckpt: Path, *extra: str) -> list[str]:
    out = ["query", "--config", "configs.tiny:tiny", "--checkpoint", str(ckpt), "--dataroot", str(world)]
    for s in [*SETS, "data.val_split=all"]:
        out += ["--set", s]
    return out + list(extra)


def test_query_writes_relevance_and_a_heat_map(tiny_world: Path, checkpoint: Path, tmp_path: Path,  # noqa: F811
                                               capsys: pytest.CaptureFixture[str]) -> None:
    token = sorted(p.parent.name for p in (tiny_world / "gts").glob("*/*/labels.npz"))[0]
    assert main(_query(tiny_world, checkpoint, "--sample", token, "--text", "a parked car", "--out",
                       str(tmp_path / "q"))) == 0
    (volumes,) = (tmp_path / "q").glob(f"samples/*/{token}/queries.npz")
    with np.load(volumes) as z:
        assert z["similarity"].shape == (1, 200, 200, 16) and z["similarity"].dtype == np.float16
        assert list(z["queries"]) == ["a parked car"] and (z["similarity"] != 0).any()
    assert (volumes.parent / "query_0_a-parked-car.png").is_file()
    assert not (tmp_path / "q" / "eval.json").exists()                  # a query is not an evaluation
    out = capsys.readouterr().out
    assert str(volumes) in out and "query_0_a-parked-car.png" in out


def test_query_bad_input(tiny_world: Path, checkpoint: Path, tmp_path: Path,  # noqa: F811
                         capsys: pytest.CaptureFixture[str]) -> None:
    assert main(_query(tiny_world, checkpoint, "--sample", "nope", "--text", "car", "--out", str(tmp_path))) == 2
    assert "no sample 'nope' in split 'all' (--sample)" in capsys.readouterr().err
    assert main(_query(tiny_world, checkpoint, "--sample", "nope", "--text", " ", "--out", str(tmp_path))) == 2
    assert "--text: must not be empty" in capsys.readouterr().err


def test_text_prototypes_from_an_encoder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "protos.npz"
    assert main(["text-prototypes", "--text-encoder", "hash", "--out", str(out)]) == 0
    with np.load(out) as z:
        assert z["embeds"].shape == (384, 21) and list(z["prompts"]) == list(OCC3D_PROMPTS)
    table = PrototypeEncoder.from_file(out)
    torch.testing.assert_close(table.encode(["car", "sky"]), HashEncoder().encode(["car", "sky"]))
    assert not list(tmp_path.glob(".*"))                                  # no temporary file left
    assert main(["text-prototypes", "--text-encoder", "hash", "--out", str(tmp_path / "p.pt")]) == 2
    assert "--out: the prototype file must end in .npz" in capsys.readouterr().err


def test_clip_templates_are_the_originals() -> None:
    assert len(CLIP_TEMPLATES) == 85 and len(set(CLIP_TEMPLATES)) == 84
    assert CLIP_TEMPLATES.count("a pixelated photo of a {}.") == 2
    assert sum("in the scene" in t for t in CLIP_TEMPLATES) == 5 and all(t.count("{}") == 1 for t in CLIP_TEMPLATES)


@pytest.mark.skipif(OPEN_CLIP, reason="open-clip-torch imports here")
def test_clip_without_open_clip_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["text-prototypes", "--text-encoder", "clip", "--out", str(tmp_path / "p.npz")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "text encoder clip: open-clip-torch is not usable here" in err[0]
    assert "pip install -e '.[clip]'" in err[0]


@pytest.mark.skipif(not OPEN_CLIP, reason="open-clip-torch is not installed (the clip extra)")
def test_clip_random_weights_average_the_templates() -> None:
    from pgocc.text.clip import ClipTextEncoder

    torch.manual_seed(0)
    enc = ClipTextEncoder("ViT-B-16", "random", templates=("a {}.", "the {}."))
    e = enc.encode(["car", "tree"])
    assert e.shape == (2, 512) and torch.allclose(e.norm(dim=-1), torch.ones(2))
    with torch.no_grad():
        raw = enc._model.encode_text(enc._tokenize(["a car.", "the car."])).double()
    mean = (raw / raw.norm(dim=-1, keepdim=True)).mean(0)
    torch.testing.assert_close(e[0].double(), mean / mean.norm(), rtol=1e-5, atol=1e-6)


class _FakeClip:
    """Stands in for open_clip where it does not import: a 'model' whose text embedding of a string is a seeded
    random vector (so each template gives another vector) and a tokenizer that passes strings through."""

    class _Model:
        text_projection = torch.zeros(8, 8)

        def eval(self) -> _FakeClip._Model:
            return self

        def encode_text(self, texts: list[str]) -> torch.Tensor:
            return torch.stack([torch.randn(8, generator=torch.Generator().manual_seed(sum(map(ord, t))))
                                for t in texts]) * 3.0

    def create_model(self, model: str, pretrained: str | None, device: str) -> _FakeClip._Model:
        assert (model, pretrained, device) == ("ViT-B-16", None, "cpu")
        return self._Model()

    def get_tokenizer(self, model: str):  # noqa: ANN201
        return lambda texts: list(texts)


def test_clip_encoder_averages_normalised_template_embeddings(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from pgocc.text.clip import ClipTextEncoder

    monkeypatch.setitem(sys.modules, "open_clip", _FakeClip())
    enc = ClipTextEncoder("ViT-B-16", "random", templates=("a {}.", "the {}.", "a {}."))
    e = enc.encode(["car"])
    raw = _FakeClip._Model().encode_text(["a car.", "the car.", "a car."]).double()
    unit = raw / raw.norm(dim=-1, keepdim=True)
    mean = unit.mean(0)                         # the repeated template weighs twice, as in the original's list
    torch.testing.assert_close(e[0].double(), mean / mean.norm(), rtol=1e-6, atol=1e-7)
    assert enc.dim == 8 and enc.encode([]).shape == (0, 8)
