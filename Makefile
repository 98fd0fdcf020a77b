# The two commands of the README: `make run` and `make test`.
PROFILE ?= default
RUN_ARGS ?=
PYTEST_ARGS ?=
DATASET ?= corpus

.PHONY: run test env serving-env data clean

env:
	@scripts/setup_env.sh

run: env serving-env
	.venv/bin/superres run --profile $(PROFILE) $(RUN_ARGS)

serving-env: env
	@scripts/setup_serving_env.sh

test: env serving-env
	.venv/bin/ruff check .
	.venv/bin/python -m pytest $(PYTEST_ARGS)

# Optional: about 110 more photos from Debian packages, or DATASET=div2k (see
# `superres data fetch --help`).
data: env
	.venv/bin/superres data fetch $(DATASET)

clean:
	rm -rf .venv .venv-serving build *.egg-info
