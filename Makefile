# vsip — the two commands a person needs:
#   make demo   run the main job on a local default (local cluster; make demo-down)
#   make test   run the whole test suite (what CI runs)
SHELL := /bin/bash
CARGO ?= cargo
export VSIP_CACHE ?= $(HOME)/.cache/vsip

.PHONY: all build release test test-e2e test-rules rules lint layers fmt demo demo-down demo-standalone bench bench-operator deps image image-full
all: build

deps:
	bash scripts/install-deps.sh

build:
	$(CARGO) build --bins

release:
	$(CARGO) build --release --bins

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

# The module structure: no import cycle, no upward dependency between layers
# (tests/layers.rs; also part of `cargo test`, so of `make test`).
layers:
	$(CARGO) test --test layers

# The end-to-end steps, in order. A check ends with a line "N passed, M failed" and
# scripts/run-steps.sh adds them up; a build step (no such line) counts only when it
# fails. A new check only needs adding here.
E2E_STEPS := "bash e2e/cluster/build.sh" \
  "bash e2e/cluster/smoke.sh" \
  "bash e2e/chart-check.sh" \
  "bash e2e/calls-check.sh" \
  "bash e2e/monitoring-check.sh" \
  "bash e2e/fleet-cpm-check.sh" \
  "bash e2e/operator-check.sh" \
  "bash scripts/image.sh" \
  "bash e2e/node-check.sh"

# Every test: lint, the alert rules, unit, integration (real SIPp, Knot DNS, TLS on
# rustls and OpenSSL) and end-to-end (a real control plane built from the Kubernetes
# Go modules, helm, kubectl). Every step runs; the last line is the totals across
# cargo and every e2e check: "N passed, M failed".
test: deps
	bash scripts/run-steps.sh "$(CARGO) fmt --all -- --check" \
	  "$(CARGO) clippy --all-targets -- -D warnings" \
	  $(RULES_STEPS) \
	  "$(CARGO) build --bins" \
	  "$(CARGO) test --all-targets --no-fail-fast -- --test-threads=2" \
	  $(E2E_STEPS)

# Alert rules: one source (the chart's files/prometheus-rules.yaml), its generated
# PrometheusRule copy up to date, and promtool unit tests (config/monitoring/tests/).
RULES_STEPS = "bash scripts/gen-prometheusrule.sh --check" \
  "promtool check rules charts/vsip-operator/files/prometheus-rules.yaml" \
  "promtool test rules config/monitoring/tests/*.yaml"
test-rules:
	bash scripts/run-steps.sh $(RULES_STEPS)

rules:
	bash scripts/gen-prometheusrule.sh

test-e2e:
	bash scripts/run-steps.sh $(E2E_STEPS)

# The image from the Dockerfile, built with buildah on local Debian base images (prints its
# reference; docs/cluster.md). `image`: this host's build packed by the Dockerfile's
# `prebuilt` target (seconds); `image-full`: the full multi-stage build (cargo in the image).
image: deps
	bash scripts/image.sh

image-full: deps
	bash scripts/image.sh --full

demo-standalone: deps build
	bash scripts/demo-standalone.sh

# The main job: vsip pods on a local cluster with a node (built from Go modules on first use).
demo: deps image
	bash scripts/demo-cluster.sh

demo-down:
	bash scripts/demo-down.sh

# Benchmark (not a test) of the operator on a local control plane: 1,000 trunks → Ready,
# render of 10,000, operator RSS, change → programmed p99 (bench/results/operator-latest.md).
bench-operator: deps
	bash bench/operator.sh

# Fragments owned by their folders.
-include e2e/cluster.mk
-include bench/bench.mk
