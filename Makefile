# Thin wrapper over CMake. `make run` and `make test` work on a fresh Debian machine as root.
BUILD      ?= build
TEST_BUILD ?= build-asan
JOBS       ?= $(shell nproc)
LISTEN     ?= 127.0.0.1:9092
DATA       ?= ./data
BENCH_ARGS ?=

.PHONY: all deps build run cluster cluster-stop test test-build test-fuzz bench clean

all: build

deps:
	@scripts/install-deps

build: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	cmake --build $(BUILD) -j$(JOBS)

# A single-node broker on $(LISTEN) with its data in $(DATA).
run: build
	@mkdir -p $(DATA)
	scripts/run-broker $(BUILD) $(LISTEN) $(DATA)

# A local cluster of $(NODES) nodes on 127.0.0.1..N:9092 (KRaft combined mode), in the background;
# each node's config, log and pid in $(DATA)/node-N. Prints the bootstrap list.
NODES ?= 3
cluster: build
	@scripts/run-cluster --nodes $(NODES) --data $(DATA) --build $(BUILD) start

cluster-stop:
	@scripts/run-cluster --data $(DATA) stop

# Every test, under AddressSanitizer and UndefinedBehaviorSanitizer.
test-build: deps
	cmake -S . -B $(TEST_BUILD) -DCMAKE_BUILD_TYPE=Debug -DLAMINAR_SANITIZE=ON >/dev/null
	cmake --build $(TEST_BUILD) -j$(JOBS)

FUZZ_BUILD ?= build-fuzz
FUZZ_RT    := $(firstword $(wildcard /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a))

test: test-build
	scripts/prepare-compat
	cd $(TEST_BUILD) && ctest --output-on-failure -j$(JOBS) --timeout 900 -LE fuzz || \
		{ $(CURDIR)/scripts/ctest-failure-tails . 20; exit 1; }
	$(MAKE) test-fuzz

# libFuzzer targets, ~60 s each, only where clang and its fuzzer runtime are installed.
test-fuzz:
ifneq ($(FUZZ_RT),)
	CC=clang cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=Debug -DLAMINAR_FUZZ=ON \
		-DLAMINAR_COMPAT=OFF >/dev/null
	cmake --build $(FUZZ_BUILD) -j$(JOBS) --target fuzz_all
	cd $(FUZZ_BUILD) && ctest --output-on-failure -j$(JOBS) -L fuzz
else
	@echo "test-fuzz: clang's libFuzzer runtime is not installed; fuzz targets not run"
endif

bench: build
	scripts/run-benchmarks $(BUILD) $(BENCH_ARGS)

clean:
	rm -rf $(BUILD) $(TEST_BUILD) $(FUZZ_BUILD)
