# diskcast: `make help` lists the targets.

GO        ?= go
BIN       := bin/diskcast
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo 0.1.0-dev)
LDFLAGS   := -s -w -X github.com/diskcast/diskcast/core/cli.Version=$(VERSION)
export PATH := $(PATH):/usr/local/go/bin

.PHONY: help build test deps lint unit examples fuzz bench bench-capture bench-capture-dirty bench-multicast bench-plugin proto demo bootenv testdisk clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

build: ## build the static diskcast binary into bin/
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./core/cmd/diskcast

deps: ## install the Debian packages the tests and demo use (as root)
	scripts/install-deps.sh

lint: ## gofmt and go vet (vet also compiles every test and benchmark)
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	cd examples/squashfs && $(GO) vet ./...

unit: build ## run every test (root-only tests skip with a reason when not root)
	$(GO) test -count=1 -timeout 40m ./...
	$(GO) test -count=1 -gcflags=-d=checkptr ./core/internal/zstdenc # its unchecked loads, checked

examples: ## build the example third-party plugin and run it through sdk/sdktest
	cd examples/squashfs && $(GO) test -count=1 ./...

test: deps lint unit examples ## what CI runs: install dependencies, lint, run all tests

fuzz: ## run each fuzz target for FUZZTIME (default 30s)
	scripts/fuzz.sh $(or $(FUZZTIME),30s)

bench: ## Go benchmarks of the hot paths
	$(GO) test -run '^$$' -bench . -benchmem ./core/image ./core/internal/zstdenc ./core/capture ./sdk/...

bench-multicast: build ## end-to-end multicast to many receivers vs udpcast and uftp (root; table of ratios)
	scripts/bench/multicast.sh

bench-plugin: ## plugin overhead: capture with the ext4 plugin in and out of process (DISKCAST_BENCH_EXT4=IMG)
	$(GO) test -run '^$$' -bench 'PluginOverhead|PluginCalls' -benchtime 9x ./core/cmd/diskcast/

proto: ## regenerate the plugin protocol's Go code (needs protobuf-compiler)
	scripts/gen-proto.sh

BENCH_DIR ?= /var/tmp/diskcast-bench

bench-capture: build ## capture/restore vs partclone+zstd (8 GiB ext4; 3 GiB NTFS, FAT32, XFS) and dd|pigz (root, ~40 GB in BENCH_DIR)
	BENCH_DIR=$(BENCH_DIR) scripts/bench/capture.sh --fs ext4,ntfs,fat,xfs --diskcast bin/diskcast $(BENCH_ARGS)

bench-capture-dirty: build ## the same on a used disk (stale data in free space), with dd|zstd too
	BENCH_DIR=$(BENCH_DIR) scripts/bench/capture.sh --dirty --with-dd-zstd --diskcast bin/diskcast $(BENCH_ARGS)

demo: deps build ## capture a real disk and multicast it to three nodes through the orchestrator
	scripts/demo.sh

BOOTENV_DIR ?= bin/bootenv

bootenv: ## build the imaging environment (vmlinuz, initrd.img, SHA256SUMS) into BOOTENV_DIR
	VERSION=$(VERSION) scripts/bootenv/build.sh $(BOOTENV_DIR)

testdisk: ## build a small bootable test disk (TESTDISK, default bin/testdisk.img) that prints a marker and powers off
	scripts/bootenv/mktestdisk.sh $(or $(TESTDISK),bin/testdisk.img) 64 $(or $(TESTDISK_ID),testdisk)

clean: ## remove build output
	rm -rf bin
