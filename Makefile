# ytmp3: `make run` starts everything on one machine, `make test` runs the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint format bench system-deps clean engine image image-offline secrets pool deploy \
	test-docker update-ytdlp doctor

$(STAMP): pyproject.toml
	infrastructure/install-system-deps.sh
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,docker,bench,ui]'
	touch $(STAMP)

## run: start the Prefect server, the deployments of prefect.yaml, the automations and the
## web page; children that die are restarted (infrastructure/local.py)
run: $(STAMP)
	$(BIN)/python infrastructure/local.py

## test: lint, then every test (Docker and browser tests skip where their engine is missing)
test: $(STAMP) lint
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## bench: the benchmarks in bench/, written to docs/benchmarks.md
bench: $(STAMP)
	$(BIN)/python -m bench

# -- production on Docker (see the README's "Production on Docker") ---------------------
# Without an API URL a Prefect client silently talks to a throwaway server of its own.
NEED_API = $(BIN)/python -c "import sys; from prefect.settings import PREFECT_API_URL as url; \
	sys.exit(None if url.value() else 'set PREFECT_API_URL, e.g. http://127.0.0.1:4200/api')"

## engine: install and start a Docker engine the way CI does (dockerd in the background)
engine:
	infrastructure/docker/start-engine.sh

## image: build ytmp3:latest (flows, worker) and ytmp3-ui:latest (page, Prefect server)
image:
	infrastructure/docker/build-images.sh $(DOCKER_BUILD_ARGS)

## image-offline: the same where no registry and no package index is reachable from
## containers (stand-in base image, wheels served from this host)
image-offline: $(STAMP)
	infrastructure/docker/build-images.sh --offline $(DOCKER_BUILD_ARGS)

## secrets: add the compose stack's secrets to infrastructure/.env (compose's first start
## does it too); values already there are kept, none is printed
secrets:
	$(PYTHON) infrastructure/docker/compose_secrets.py

# pool and deploy talk to a server that asks for the auth string of infrastructure/.env.
COMPOSE_AUTH := $(shell sed -n 's/^PREFECT_API_AUTH_STRING=//p' infrastructure/.env 2>/dev/null | tail -n 1)
ifneq ($(COMPOSE_AUTH),)
pool deploy: export PREFECT_API_AUTH_STRING ?= $(COMPOSE_AUTH)
endif

## pool: create or update the locked Docker work pool on $$PREFECT_API_URL
## (POOL_ARGS: create_pool.py's options, e.g. --network NAME --env YTMP3_PROXY=...)
pool: $(STAMP)
	@$(NEED_API)
	$(BIN)/python infrastructure/docker/create_pool.py $(POOL_ARGS)

## deploy: build the image, register every deployment of prefect.yaml on the pool, then
## create or update the automations of flows/automations.py (zombie runs, re-runs)
deploy: $(STAMP)
	@$(NEED_API)
	$(BIN)/prefect --no-prompt deploy --all
	$(BIN)/python -m flows.automations

## doctor: can this installation convert today's YouTube? (python -m flows.doctor)
doctor: $(STAMP)
	$(BIN)/python -m flows.doctor

## update-ytdlp: the newest yt-dlp (and its JS solver) in the venv; then, with
## PREFECT_API_URL set, the flows image's yt-dlp layer at that version and every deployment
## (make deploy), else just the images (make $(IMAGE_TARGET): image, or image-offline).
## DOCKER=0 skips the images. The doctor's report is shown, not enforced (no data dir yet?).
IMAGE_TARGET ?= image
YTDLP_INSTALLED = $(BIN)/python -c "import yt_dlp.version; print(yt_dlp.version.__version__)"
update-ytdlp: $(STAMP)
	$(BIN)/pip install --quiet --upgrade 'yt-dlp[default,deno]'
	@echo "update-ytdlp: yt-dlp $$($(YTDLP_INSTALLED)) in $(VENV)"
	-$(BIN)/python -m flows.doctor --no-prefect
	@if [ "$(DOCKER)" = 0 ]; then exit 0; fi; \
	version=$$($(YTDLP_INSTALLED)); \
	if $(BIN)/python -c "import sys; from prefect.settings import PREFECT_API_URL as u; \
		sys.exit(0 if u.value() else 1)"; then \
		YTDLP_VERSION=$$version $(MAKE) deploy; \
	else \
		$(MAKE) $(IMAGE_TARGET) DOCKER_BUILD_ARGS="--build-arg YTDLP_VERSION=$$version $(DOCKER_BUILD_ARGS)"; \
	fi

## test-docker: only the Docker tests (image build, flows through a real Docker worker)
test-docker: $(STAMP)
	$(BIN)/pytest tests/docker

system-deps:
	infrastructure/install-system-deps.sh

clean:
	rm -rf .run .pytest_cache .ruff_cache
