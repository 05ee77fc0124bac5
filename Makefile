# `make demo` and `make test` each build .venv from nothing the first time.
VENV   := .venv
PYTHON := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test test-fast lint clean

$(STAMP): pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -c constraints.txt torch torchvision
	$(PYTHON) -m pip install --quiet -c constraints.txt -e '.[dev]'
	$(PYTHON) -m compileall -q src  # an editable install leaves ichseg's own bytecode to the first run
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/ichseg demo --workspace ichseg-workspace

test: $(STAMP)
	$(PYTHON) -m pytest -q

# Everything but the tests marked slow (end-to-end training, prediction, serve, Ray): under a minute.
test-fast: $(STAMP)
	$(PYTHON) -m pytest -q -m "not slow"

# ruff (pyflakes, pycodestyle, bugbear, import order) and mypy, as configured in pyproject.toml.
lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy src

clean:
	rm -rf $(VENV) ichseg-workspace
