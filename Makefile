# Two entry points: `make demo` (set up + small pipeline run + report) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# CPU build of torch that lies on this machine's disk; pyproject keeps the range open for GPU users.
TORCH_PIN ?= torch==2.13.0

.PHONY: demo test test-slow bench quality robustness lint clean venv

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_PIN)"
	$(PY) -m pip install -q -e ".[dev,rl]"
	touch $@

demo: venv
	$(PY) -m mmrep.demo --out outputs/demo

test: venv
	$(PY) -m pytest -q

test-slow: venv
	$(PY) -m pytest -q -m slow

bench: venv  # results land in outputs/bench; committed copies live in benchmarks/results
	$(PY) benchmarks/env_step.py --out outputs/bench/env_step.json
	$(PY) benchmarks/expert_success.py --episodes 50 --out outputs/bench/expert_success.json
	$(PY) benchmarks/expert_success.py --episodes 20 --physics-hz 240 \
		--out outputs/bench/expert_success_240hz.json
	$(PY) benchmarks/collect.py --out outputs/bench/collect.json
	$(PY) benchmarks/loader.py --out outputs/bench/loader.json
	$(PY) benchmarks/train_throughput.py --out outputs/bench/train_throughput.json

# The representation's quality run and ablation table (README): about 6 + 44 + 40 minutes on 2 cores.
# The ablations are one Hydra multirun (one run folder per model config), then a table of the runs.
quality: venv
	test -f data/quality/manifest.json || $(VENV)/bin/mmrep collect episodes=1200 workers=2 out=data/quality
	$(VENV)/bin/mmrep train experiment=quality threads=2
	$(VENV)/bin/mmrep train -m 'model=glob(*)' data=data/quality out=runs/ablations epochs=1 \
		max_batches_per_epoch=2000 max_val_batches=100 lr=3.0e-4 lr_schedule=cosine threads=2
	$(PY) benchmarks/ablations.py runs/ablations --json outputs/bench/ablations.json

# The robust representation and its evaluation (README, "Robustness"): about 50 + 30 minutes on 2 cores.
# The robustness comparison (README, "Robustness"): six 57-minute trainings, the in-simulation
# occluder test sets and the evaluations; about 7 hours on a 2-core CPU. Each step resumes or skips.
COMPARE = quality_poe robust concat concat_robust vision_only force_only
COMPARE_RUNS = plain:runs/quality_poe,robust:runs/robust,concat:runs/concat,concat_robust:runs/concat_robust,vision_only:runs/vision_only,force_only:runs/force_only
OCCLUDER50 = env.occluder.size=[0.146,0.146] env.occluder.offset_range=0.02
robustness: venv
	test -f data/quality/manifest.json || $(VENV)/bin/mmrep collect episodes=1200 workers=2 out=data/quality
	for e in $(COMPARE); do $(VENV)/bin/mmrep train experiment=$$e threads=2 || exit 1; done
	$(VENV)/bin/mmrep collect episodes=48 workers=2 seed=5000 out=data/clean_test
	$(VENV)/bin/mmrep collect episodes=48 workers=2 seed=5000 out=data/occluder50_test env.occluder.mode=static $(OCCLUDER50)
	$(VENV)/bin/mmrep collect episodes=48 workers=2 seed=5000 out=data/occluder50_after_contact_test env.occluder.mode=after_contact $(OCCLUDER50)
	$(VENV)/bin/mmrep evaluate "runs=[$(COMPARE_RUNS)]" data=data/quality out=outputs/eval_compare threads=2
	for d in clean_test occluder50_test occluder50_after_contact_test; do \
	  $(VENV)/bin/mmrep evaluate "runs=[$(COMPARE_RUNS)]" data=data/$$d split=all episodes=48 calibration_episodes=0 \
	    "perturbations=[]" out=outputs/eval_$$d threads=2 || exit 1; done
	$(PY) benchmarks/robustness_summary.py --grid outputs/eval_compare \
	  --sim clean=outputs/eval_clean_test occluder50=outputs/eval_occluder50_test \
	    occluder50_after_contact=outputs/eval_occluder50_after_contact_test \
	  --runs $(foreach e,$(COMPARE),$(e)=runs/$(e)) \
	  --roles fused=robust plain=plain vision=vision_only force=force_only --out outputs/robustness_summary.json

lint: venv
	$(VENV)/bin/ruff check sim mmrep tests benchmarks

clean:
	rm -rf outputs .pytest_cache
