# mvpn: every entry point a user or CI needs. Each target builds .venv itself.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: venv system-packages test check unit bench bench-wire bench-tc bench-registration bench-dataplane bench-scale bench-tunnels fuzz clean

venv: $(STAMP)

$(STAMP): requirements.txt setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation --config-settings editable_mode=compat -e .
	touch $(STAMP)

## Lint and types: ruff and mypy over the package, the tests and the benchmarks.
check: $(STAMP)
	$(VENV)/bin/ruff check mvpn tests benchmarks twisted tac setup.py
	$(VENV)/bin/ruff format --check mvpn tests benchmarks twisted setup.py
	$(VENV)/bin/mypy

## Debian packages for the namespace tests and the lab (ip, ping, iperf3, sysctl). Installs
## them as root; as non-root it names what is missing and fails.
system-packages:
	sh scripts/ensure-system-packages

# Root (CI, the lab) installs the system packages before the suite so the namespace tests run
# instead of skipping; a non-root `make test` must still work, so it does not depend on them.
ifeq ($(shell id -u),0)
UNIT_DEPS := system-packages
else
UNIT_DEPS :=
endif

## The whole suite. pytest's exit code 5 (no tests collected) is a failure.
unit: $(STAMP) $(UNIT_DEPS)
	$(PY) -m pytest; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi; \
	exit $$rc

test: check unit

## The whole draft on loopback in one process, verified step by step (no root, no config):
## two domains, every role, data both ways, a move under load, refused attacks.
.PHONY: demo
demo: $(STAMP)
	$(PY) -m mvpn.demo

## MVPN for real in network namespaces (root): every role a twistd process, ping and iperf3
## from the CN to the MN's home address through TUN devices, a move half-way (docs/lab.md).
.PHONY: lab
lab: $(STAMP) system-packages
	$(PY) -m mvpn.lab

## Longer Hypothesis run of every decoder (not part of `make test`).
fuzz: $(STAMP)
	MVPN_HYPOTHESIS_PROFILE=long $(PY) -m pytest tests/wire -k fuzz --timeout=0

bench-wire: $(STAMP)
	$(PY) -m benchmarks.wire_crypto

## Lookups per second through one Trusted Centre on loopback.
bench-tc: $(STAMP)
	$(PY) -m benchmarks.tc_lookup

## First contacts and re-registrations per second at one HA (a twistd process) on loopback.
bench-registration: $(STAMP)
	$(PY) -m benchmarks.registration

## Per-hop data-plane rates (seal, forward, open) and frames per second through the tunnel.
bench-dataplane: $(STAMP)
	$(PY) -m benchmarks.dataplane

## HA memory per binding and CPU per re-registration from 1,000 to 10,000 mobile nodes.
bench-scale: $(STAMP)
	$(PY) -m benchmarks.scale

## iperf3 through OpenVPN (TCP, AES-256-GCM), wireguard-go and a bare veth (root).
bench-tunnels: $(STAMP)
	$(PY) -m benchmarks.tunnels

## Everything TARGETS.md names, in one run, beside OpenVPN and wireguard-go (the namespace
## parts need root): benchmarks/results/latest.json, latest.md and PNG plots. The message
## and TC micro-benchmarks run first (their own tables and JSON).
bench: $(STAMP) bench-wire bench-tc
	$(PY) -m benchmarks.report

clean:
	rm -rf $(VENV) build *.egg-info _trial_temp .hypothesis .pytest_cache .mypy_cache .ruff_cache
