# Thin wrapper over CMake. `make run` and `make test` work on a fresh Debian machine as root.
BUILD      ?= build
TEST_BUILD ?= build-asan
JOBS       ?= $(shell nproc)
LISTEN     ?= 127.0.0.1:9092
DATA       ?= ./data

.PHONY: all deps build run test test-build bench clean

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

# Every test, under AddressSanitizer and UndefinedBehaviorSanitizer.
test-build: deps
	cmake -S . -B $(TEST_BUILD) -DCMAKE_BUILD_TYPE=Debug -DLAMINAR_SANITIZE=ON >/dev/null
	cmake --build $(TEST_BUILD) -j$(JOBS)

test: test-build
	scripts/prepare-compat
	cd $(TEST_BUILD) && ctest --output-on-failure -j$(JOBS) --timeout 900

bench: build
	scripts/run-benchmarks $(BUILD)

clean:
	rm -rf $(BUILD) $(TEST_BUILD)
