# Set-up, the main job and the tests in one place; README.md and .ci/run call these targets.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# the CPU build of torch, installed before the project so that no multi-GB CUDA build is pulled in
TORCH ?= torch==2.13.0
MODEL ?= dav2-small
OUTDIR ?= vis_depth

.PHONY: setup browser run test lint check-torch113 viewer clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[all,dev]"
	touch $@

setup: $(VENV)/.installed

# make run IMAGE=photo.jpg [WEIGHTS=depth_anything_v2_vits.pth] [MODEL=dav2-small]
run: setup
	@test -n "$(IMAGE)" || { echo "usage: make run IMAGE=photo.jpg [WEIGHTS=file.pth] [MODEL=$(MODEL)]"; exit 2; }
	$(BIN)/anydepth image "$(IMAGE)" --model $(MODEL) $(if $(WEIGHTS),--weights "$(WEIGHTS)") --outdir $(OUTDIR)

# Chromium + chromedriver for the browser tests (apt, as root; otherwise those tests skip and say why)
browser:
	scripts/install_browser.sh

test: setup browser
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check src tests scripts benchmarks
	$(BIN)/ruff format --check src tests scripts benchmarks
	$(BIN)/vermin --eval-annotations --feature union-types -t=3.9- --no-tips --violations src/anydepth

# the core tests on torch 1.13.1 and Python 3.9 (AWS Inf1), in .venv-torch113
check-torch113:
	scripts/check_torch113.sh

# the gallery's 3D viewer: three.js bundled by esbuild into the package (commit the result; pip needs no node)
viewer:
	cd web && npm ci --no-audit --no-fund && npm run build

clean:
	rm -rf $(VENV) .venv-torch113 build *.egg-info .pytest_cache .ruff_cache
