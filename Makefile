# The two commands of the README, plus helpers. Each target installs what it needs first (scripts/setup.sh is
# idempotent: a stamp in the venv makes a second run instant).
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo demo-checkpoint test bench-gpu lint

setup:
	@bash scripts/setup.sh $(VENV)

DEMO_WORLD ?= data/demo-heldout

# The main job: `pgocc demo` writes a small held-out synthetic world once (1 scene, 3 keyframes; written under a
# temporary name and renamed when complete, so its presence means it is whole), runs the shipped checkpoint and its
# untrained self on it (occupancy, mIoU, RayIoU, depth, three text queries), and writes report.md with the pictures
# and the training curves under runs/demo/.
DEMO_CHECKPOINT ?= pgocc/assets/demo.safetensors

demo: setup
	$(PY) -m pgocc demo --world $(DEMO_WORLD) --checkpoint $(DEMO_CHECKPOINT) --out runs/demo

# How the shipped demo checkpoint was made (about 70 minutes on 2 CPU cores): configs.small:small_cpu trained on a
# 12-scene world at half resolution, validated on a 4-scene world of another seed, exported in float16.
TRAIN_WORLD ?= data/train-world
HELDOUT_WORLD ?= data/heldout-world
demo-checkpoint: setup
	@test -d $(TRAIN_WORLD) || $(PY) -m pgocc make-synthetic --out $(TRAIN_WORLD) --seed 1 --scenes 12 --width 352 --height 198
	@test -d $(HELDOUT_WORLD) || $(PY) -m pgocc make-synthetic --out $(HELDOUT_WORLD) --seed 2 --scenes 4 --width 352 --height 198
	$(PY) -m pgocc train --config configs.small:small_cpu --dataroot $(TRAIN_WORLD) --set data.val_dataroot=$(HELDOUT_WORLD) \
		--out runs/demo-checkpoint --export-fp16
	cp runs/demo-checkpoint/model.safetensors $(DEMO_CHECKPOINT)
	cp runs/demo-checkpoint/metrics.jsonl $(basename $(DEMO_CHECKPOINT)).metrics.jsonl

test: setup
	$(PY) -m pytest tests -q

lint: setup
	@$(VENV)/bin/pip install -q ruff==0.17.6 2>&1 | grep -v "is ignored" || true
	$(VENV)/bin/ruff check pgocc kernels_triton kernels_gsplat reference tests bench configs
