# Sourced by the GPU scripts: install the offline wheels in .whl/ and libturbojpeg from .deb/ on a GPU machine without
# internet access that has torch, triton and pytest-benchmark but not nuscenes-devkit, gsplat and the loader's
# packages (README, "GPU runs"), and record the device in $OUT/device.txt. PGOCC_GIT_SHA names the commit when the
# copy has no .git.
export PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "gpu_env: installing the wheels of .whl/ failed" >&2; exit 1; }
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
if compgen -G ".deb/*.deb" >/dev/null; then
  for f in .deb/*.deb; do dpkg -x "$f" /tmp/debroot; done
  export LD_LIBRARY_PATH=/tmp/debroot/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/device.txt"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" | tee -a "$OUT/device.txt"
echo "commit ${PGOCC_GIT_SHA:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}" | tee -a "$OUT/device.txt"
