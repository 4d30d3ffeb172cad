# The two commands of the README, plus helpers. Each target installs what it needs first (scripts/setup.sh is
# idempotent: a stamp in the venv makes a second run instant).
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test bench-gpu lint

setup:
	@bash scripts/setup.sh $(VENV)

DEMO_WORLD ?= data/demo-world

# The main job on the embedded default: write the synthetic nuScenes-format world once (written under a temporary
# name and renamed when complete, so its presence means it is whole), then run the model end to end on it: loader,
# Gaussians, readout to Occ3D labels, mIoU against the world's labels, text queries, pictures.
demo: setup
	@test -d $(DEMO_WORLD) || $(PY) -m pgocc make-synthetic --out $(DEMO_WORLD)
	$(PY) -m pgocc infer --config configs.tiny:tiny --dataroot $(DEMO_WORLD) --num-samples 2 --query car --query tree

test: setup
	$(PY) -m pytest tests -q

lint: setup
	@$(VENV)/bin/pip install -q ruff==0.17.6 2>&1 | grep -v "is ignored" || true
	$(VENV)/bin/ruff check pgocc kernels_triton reference tests bench configs
