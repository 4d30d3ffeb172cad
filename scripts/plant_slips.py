# ruff: noqa: E501  (the slips are one line each, as planted)
"""Plant each slip of SLIPS, one at a time, in a scratch worktree and record which tests fail (tests/README.md).

    git worktree add --detach /tmp/slips HEAD
    .venv/bin/python scripts/plant_slips.py /tmp/slips [tests ...]      # default: tests/test_model_behaviour_*.py

Never run it on the working tree you edit: each slip is written into the worktree's pgocc/ and restored with
``git checkout`` afterwards. Prints one Markdown table row per slip; OMP_NUM_THREADS=1 keeps it to one core.
"""
import os
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(sys.argv[1]).resolve()
PYTHON = str(pathlib.Path(__file__).resolve().parents[1] / ".venv" / "bin" / "python")
SLIPS = [
 ("densification sign flipped", "pgocc/model/pgocc.py", "behind = (rendered - depth) > cfg.densify_threshold", "behind = (depth - rendered) > cfg.densify_threshold"),
 ("loss weights dropped from the total", "pgocc/model/criterion.py", "total = total + self.cfg.stage_weights[s] * self.weights[name] * value", "total = total + value"),
 ("old/new attention mask removed", "pgocc/model/attention.py", "centres.detach(), tau, num_old,", "centres.detach(), tau, 0,"),
 ("AdaptiveMixing channel matrix transposed", "pgocc/model/mixing.py", "m = m.reshape(B, Q, self.groups, self.channels, self.channels)", "m = m.reshape(B, Q, self.groups, self.channels, self.channels).transpose(-1, -2)"),
 ("distance-bias sign flipped", "pgocc/model/attention.py", "tau = self.gen_tau(x).transpose(1, 2)", "tau = -self.gen_tau(x).transpose(1, 2)"),
 ("position encoder fed metres", "pgocc/model/pgocc.py", "normalize_coords(positions, cfg.pc_range)", "positions"),
 ("pyramid: groups and cameras swapped", "pgocc/model/pgocc.py", "permute(0, 1, 3, 2, 5, 6, 4)", "permute(0, 1, 2, 3, 5, 6, 4)"),
 ("offsets read (p, g) instead of (g, p)", "pgocc/model/decoder.py", "offsets = self.sampling_offset(query).view(B, Q, self.groups, self.points, 3)", "offsets = self.sampling_offset(query).view(B, Q, self.points, self.groups, 3).transpose(2, 3)"),
 ("level weights softmaxed over points", "pgocc/model/decoder.py", "self.points, self.levels).softmax(-1)", "self.points, self.levels).softmax(-2)"),
 ("delta without the 2σ−1 centring", "pgocc/model/heads.py", "delta = (2 * torch.sigmoid(raw[..., 0:3]) - 1) * max_delta", "delta = torch.sigmoid(raw[..., 0:3]) * max_delta"),
 ("opacity read from the last scale", "pgocc/model/heads.py", "opacities = torch.sigmoid(raw[..., OPACITY_OUTPUT])", "opacities = torch.sigmoid(raw[..., OPACITY_OUTPUT - 1])"),
 ("delta scaled ×2^s instead of ×2^−s", "pgocc/model/pgocc.py", "torch.exp2(-self.origin_stage[:Q])", "torch.exp2(self.origin_stage[:Q])"),
 ("attention distance over (x, z)", "pgocc/model/decoder.py", "self._run(self.self_attn, q, centres[..., :2], num_old)", "self._run(self.self_attn, q, centres[..., ::2], num_old)"),
 ("densification mask not accumulated", "pgocc/model/pgocc.py", "candidates = candidates & behind.flatten(1)", "candidates = behind.flatten(1)"),
 ("wrong fallback rows", "pgocc/model/pgocc.py", "fallback = init[:, start:start + num]", "fallback = init[:, :num]"),
 ("FFN residual added twice", "pgocc/model/decoder.py", "return self.norm3(self.ffn(q))", "return self.norm3(q + self.ffn(q))"),
 ("rendered depth not clamped for the losses", "pgocc/model/criterion.py", "depth = depth.clamp(*RENDER_DEPTH_RANGE)", "depth = depth"),
 ("images not flipped BGR to RGB", "pgocc/model/pgocc.py", "x = (images.flip(1).to(", "x = (images.to("),
 ("query rows taken from the end of the table", "pgocc/model/pgocc.py", "query = self.query_embeds.weight[:Q]", "query = self.query_embeds.weight[-Q:]"),
 ("stage-0 ROI ignored (paper)", "pgocc/model/pgocc.py", "valid & roi if self.roi_at_stage0 else valid", "valid"),
 ("anisotropic sampling frames never used", "pgocc/model/pgocc.py", "if self.anisotropic and prev is not None:", "if False:"),
 ("readout group sum instead of max", "pgocc/model/readout.py", "merged = torch.maximum(merged, scores.index_select(-1, row))", "merged = merged + scores.index_select(-1, row)"),
 ("readout variance filter on σ instead of σ²", "pgocc/model/readout.py", "(rot.square() * g.scales.square().unsqueeze(-2))", "(rot.square() * g.scales.unsqueeze(-2))"),
 ("warp with the inverse motion", "pgocc/model/losses.py", "pts = transform_points(target_to_source, backproject(depth, intrinsics))", "pts = transform_points(torch.linalg.inv(target_to_source), backproject(depth, intrinsics))"),
 ("warp: prev/next transforms swapped", "pgocc/model/losses.py", "cur_to_src[:, j * N:(j + 1) * N].flatten(0, 1))", "cur_to_src[:, (1 - j) * N:(2 - j) * N].flatten(0, 1))"),
 ("positions detached between stages", "pgocc/model/pgocc.py", "positions = positions + delta", "positions = positions.detach() + delta"),
 ("free threshold hard-coded 0.04", "pgocc/model/readout.py", "return occupancy_labels(density, field, column_labels, self.cfg.density_threshold)", "return occupancy_labels(density, field, column_labels, 0.04)"),
]
tests = sys.argv[2:] or sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_model_behaviour_*.py"))
for name, path, old, new in SLIPS:
    f = ROOT / path
    subprocess.run(["git", "-C", str(ROOT), "checkout", "-q", "--", path], check=True)
    text = f.read_text()
    if text.count(old) != 1:
        print(f"| {name} | `{path}` | (not applied: the line changed) |", flush=True)
        continue
    f.write_text(text.replace(old, new))
    try:
        r = subprocess.run([PYTHON, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests], cwd=ROOT,
                           capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    finally:
        subprocess.run(["git", "-C", str(ROOT), "checkout", "-q", "--", path], check=True)
    failed = sorted({re.sub(r"\[.*\]$", "", t) for t in re.findall(r"^FAILED (\S+)", r.stdout, re.M)})
    shown = "<br>".join(f"`{t.removeprefix('tests/')}`" for t in failed) or "**none**"
    print(f"| {name} | `{path}` | {shown} |", flush=True)
