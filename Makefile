# Two entry points on a fresh Debian 12 machine (as root): `make demo` and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
APT_PACKAGES := skopeo docker-registry grub-common fdisk e2fsprogs util-linux gnupg \
	isal pigz zstd tar gzip attr libcap2-bin rsync apache2-utils openssl coreutils python3-venv
STAMP_APT := $(VENV)/.apt-done
STAMP_PY := $(VENV)/.py-done

.PHONY: deps demo test lint bench clean

deps: $(STAMP_APT) $(STAMP_PY)

$(STAMP_APT):
	@mkdir -p $(VENV)
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null \
		| grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing: $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends $$missing >/dev/null; \
	fi
	@touch $@

$(STAMP_PY): pyproject.toml $(STAMP_APT)
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip >/dev/null
	@$(PY) -m pip install -q -e '.[test]' --config-settings editable_mode=compat
	@touch $@

demo: deps
	$(VENV)/bin/python -m reconciler.sandbox.demo

test: deps
	$(PY) -m pytest -q

lint: deps
	$(VENV)/bin/ruff check reconciler tests bench
	$(VENV)/bin/mypy

bench: deps
	$(PY) -m bench.run

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
