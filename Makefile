# Set-up, the main job and the tests in one place; README.md and .ci/run call these targets.
#   make run IMAGE=photo.jpg   .venv with torch (the CPU build where there is no NVIDIA GPU) and anydepth's core
#   make test                  the same .venv plus every extra and the test tools, Chromium, then the suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# scripts/install_torch.sh picks the build: CPU (PyTorch's CPU index or a local wheel) unless an NVIDIA GPU is seen
TORCH ?= torch==2.13.0
MODEL ?= dav2-small
OUTDIR ?= vis_depth
VENV_PIP := $(BIN)/python -m pip install

.PHONY: setup setup-dev browser run test test-precision lint check-torch113 viewer clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.torch: | $(BIN)/python
	scripts/install_torch.sh $(BIN)/python "$(TORCH)"
	touch $@

# what `anydepth image` needs: torch, numpy, OpenCV, Pillow, safetensors, huggingface_hub, typer, tqdm
$(VENV)/.installed: pyproject.toml $(VENV)/.torch
	@echo "installing anydepth (core) into $(VENV)"
	$(VENV_PIP) -e .
	touch $@

# every extra (video, exports, deployment runtimes, service, web app, DepthCrafter) and the test tools
$(VENV)/.installed-dev: pyproject.toml $(VENV)/.torch
	@echo "installing anydepth with every extra and the test tools into $(VENV) (about 2.3 GB in all)"
	$(VENV_PIP) -e ".[all,dev]"
	touch $(VENV)/.installed $@

setup: $(VENV)/.installed

setup-dev: $(VENV)/.installed-dev

# make run IMAGE=photo.jpg [WEIGHTS=depth_anything_v2_vits.pth] [MODEL=dav2-small]
run: setup
	@test -n "$(IMAGE)" || { echo "usage: make run IMAGE=photo.jpg [WEIGHTS=file.pth] [MODEL=$(MODEL)]"; exit 2; }
	$(BIN)/anydepth image "$(IMAGE)" --model $(MODEL) $(if $(WEIGHTS),--weights "$(WEIGHTS)") --outdir $(OUTDIR)

# Chromium + chromedriver for the browser tests (apt, as root; otherwise those tests skip and say why)
browser:
	scripts/install_browser.sh

test: setup-dev browser
	$(BIN)/python -m pytest

# the tests marked `precision` (bf16, fused oneDNN kernels, SDPA) again with "auto" in float32, as on CPUs
# without native bf16, and with the hand-written fast paths off (their plain twins)
test-precision: setup-dev
	ANYDEPTH_CPU_BF16=0 $(BIN)/python -m pytest -m precision
	ANYDEPTH_FAST_PATHS=0 $(BIN)/python -m pytest -m precision

lint: setup-dev
	$(BIN)/ruff check src tests scripts benchmarks
	$(BIN)/ruff format --check src tests scripts benchmarks
	$(BIN)/vermin --eval-annotations --feature union-types -t=3.9- --no-tips --violations src/anydepth

# the core tests on torch 1.13.1 and Python 3.9 (AWS Inf1), in .venv-torch113
check-torch113:
	scripts/check_torch113.sh

# the gallery's 3D viewer (three.js bundled by esbuild) and the backend's API docs (Swagger UI from swagger-ui-dist)
# into the package (commit the result; pip needs no node)
viewer:
	cd web && npm ci --no-audit --no-fund && npm run build

clean:
	rm -rf $(VENV) .venv-torch113 build *.egg-info .pytest_cache .ruff_cache
