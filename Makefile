# Surge's container images, built without network inside the build.
#
#   make base-image   once per machine: a Debian bookworm base with python3, made with
#                     debootstrap and `docker import` (no registry is needed); reused
#                     while the engine keeps it
#   make wheelhouse   the wheels of Surge (build/dist) and of everything it needs
#                     (build/wheelhouse), built on the host with `pip wheel`: the only
#                     things the image builds install
#   make images       the wheelhouse, then surge:dev (control plane, activator,
#                     autoscaler: entrypoint `surge`), surge-queue-proxy:dev (the
#                     sidecar) and surge-helloworld:dev (the example app)
#   make images BASE_IMAGE=python:3.11-slim    the same on another base
#   make clean-images removes the three images (the base stays)
#
# The Dockerfile builds with the classic builder (Debian's engine has no BuildKit
# plugin), so DOCKER_BUILDKIT=0 is exported for every build.

BASE_IMAGE ?= surge-base:bookworm
TAG ?= dev
PYTHON ?= $(if $(wildcard .venv/bin/python),.venv/bin/python,python3)
DOCKER ?= docker
DEBIAN_SUITE ?= bookworm
DEBIAN_MIRROR ?= http://deb.debian.org/debian
WHEELHOUSE := build/wheelhouse

export DOCKER_BUILDKIT := 0

.PHONY: help images wheelhouse base-image clean-images

help:
	@sed -n '2,17p' Makefile | sed 's/^# \{0,1\}//'

# The default base is the local one: `make images` builds it first if it is missing.
images: wheelhouse $(if $(filter surge-base:%,$(BASE_IMAGE)),base-image)
	$(DOCKER) build --quiet --build-arg BASE_IMAGE=$(BASE_IMAGE) --target surge \
	    -t surge:$(TAG) .
	$(DOCKER) build --quiet --build-arg BASE_IMAGE=$(BASE_IMAGE) --target queue-proxy \
	    -t surge-queue-proxy:$(TAG) .
	$(DOCKER) build --quiet --build-arg BASE_IMAGE=$(BASE_IMAGE) --target helloworld \
	    -t surge-helloworld:$(TAG) .
	@$(DOCKER) image ls --format '{{.Repository}}:{{.Tag}}  {{.Size}}' \
	    | grep -E '^(surge|surge-queue-proxy|surge-helloworld):$(TAG) ' || true

# Surge's own wheel goes to build/dist (reproducible: SOURCE_DATE_EPOCH pins its file
# times, so unchanged sources give the same bytes and the engine's layer cache holds);
# the wheels it needs, and pip itself (the builds run pip from its wheel), go to
# build/wheelhouse. A warm run finds them all there without asking the index.
wheelhouse:
	@mkdir -p $(WHEELHOUSE) build/dist
	@rm -f build/dist/surge-*.whl
	SOURCE_DATE_EPOCH=315532800 $(PYTHON) -m pip wheel --quiet --no-deps --wheel-dir build/dist . \
	    2>build/wheel.log || { cat build/wheel.log; exit 1; }
	$(PYTHON) -m pip wheel --quiet --no-index --find-links $(WHEELHOUSE) --wheel-dir $(WHEELHOUSE) \
	    pip build/dist/surge-*.whl 2>/dev/null \
	  || $(PYTHON) -m pip wheel --quiet --find-links $(WHEELHOUSE) --wheel-dir $(WHEELHOUSE) \
	    pip build/dist/surge-*.whl
	@rm -f $(WHEELHOUSE)/surge-*.whl

# Debian minbase + python3, without docs, locales, apt lists or caches (about 90 MB).
base-image:
	@if $(DOCKER) image inspect $(BASE_IMAGE) >/dev/null 2>&1; then \
	    echo "base image $(BASE_IMAGE) is there: reused"; \
	else \
	    set -e; root=$$(mktemp -d); trap 'rm -rf "$$root"' EXIT; \
	    echo "debootstrap $(DEBIAN_SUITE) minbase + python3 into $$root"; \
	    debootstrap --variant=minbase --include=python3 $(DEBIAN_SUITE) "$$root" \
	        $(DEBIAN_MIRROR) >"$$root.log" 2>&1 || { tail -20 "$$root.log"; exit 1; }; \
	    rm -f "$$root.log"; \
	    rm -rf "$$root"/usr/share/doc/* "$$root"/usr/share/man/* "$$root"/usr/share/info/* \
	        "$$root"/usr/share/locale/* "$$root"/var/lib/apt/lists/* \
	        "$$root"/var/cache/apt/*.bin "$$root"/var/cache/apt/archives/*.deb \
	        "$$root"/var/log/*.log; \
	    tar -C "$$root" --numeric-owner -c . | $(DOCKER) import \
	        --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' - $(BASE_IMAGE); \
	fi

clean-images:
	-$(DOCKER) image rm surge:$(TAG) surge-queue-proxy:$(TAG) surge-helloworld:$(TAG)
