# Two entry points: `make demo` (set up + small pipeline run + report) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# CPU build of torch that lies on this machine's disk; pyproject keeps the range open for GPU users.
TORCH_PIN ?= torch==2.13.0

.PHONY: demo test test-slow bench lint clean venv

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

lint: venv
	$(VENV)/bin/ruff check sim mmrep tests benchmarks

clean:
	rm -rf outputs .pytest_cache
