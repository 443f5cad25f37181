# loopmq build, test and benchmark entry points. Everything here needs only Go;
# interop tests that drive Debian's mosquitto clients skip with a message when
# the binaries are missing (.ci/run installs them).

GO        ?= go
FUZZTIME  ?= 30s
BENCHTIME ?= 1s

# Fuzz targets as package:Target pairs; `make fuzz` runs each for FUZZTIME.
FUZZ_TARGETS := ./codec:FuzzDecode ./codec:FuzzSplit ./passwd:FuzzParsePasswd ./acl:FuzzParseACL ./store:FuzzDecodeValue ./engine:FuzzConnection

.PHONY: all build test vet fmt-check check-gnet alloc-check bench bench-compare fuzz clean run soak

all: build

build:
	$(GO) build ./...

## test: vet, formatting check, the vendored gnet check, the allocation
## check, and every test with the race detector.
test: vet fmt-check check-gnet alloc-check
	$(GO) test -race -count=1 ./...

## alloc-check: the tests that count heap allocations, which only mean
## something without the race detector (it makes sync.Pool drop objects):
## no allocation per QoS 0 delivery in the harness (bench), none per
## message between real 5.0 clients one message at a time (engine).
alloc-check:
	$(GO) test -count=1 -run 'AllocationFree' ./bench/ ./engine/

vet:
	$(GO) vet ./...

fmt-check:
	@out="$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))"; \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

## check-gnet: third_party/gnet is gnet v2.9.7 from the module proxy minus
## what loopmq never compiles plus third_party/gnet/loopmq.diff, byte for byte
## (third_party/gnet.sh; `third_party/gnet.sh sync` rewrites it).
check-gnet:
	@third_party/gnet.sh check

## bench: every Go benchmark once, with allocation counts.
bench:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) ./...

## bench-compare: loopmq against Mosquitto (/usr/sbin/mosquitto), the same
## loadgen matrix against each, about 8 minutes; rewrites the "loopmq vs
## Mosquitto" section of docs/benchmarks.md. COMPARE_FLAGS=-quick is a
## 2-minute smoke run that leaves the docs alone.
COMPARE_FLAGS ?=
bench-compare:
	@set -e; tmp="$$(mktemp -d)"; trap 'rm -rf "$$tmp"' EXIT INT TERM; \
	$(GO) build -o "$$tmp/" ./cmd/loopmq ./cmd/loadgen ./bench/compare; \
	"$$tmp/compare" -loopmq "$$tmp/loopmq" -loadgen "$$tmp/loadgen" $(COMPARE_FLAGS)

## fuzz: each fuzz target for FUZZTIME (default 30s).
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "fuzz $$pkg $$name for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$name$$" -fuzztime $(FUZZTIME) $$pkg; \
	done

clean:
	$(GO) clean ./...

## run: build and start the broker on :1883 with built-in defaults.
run:
	$(GO) run ./cmd/loopmq

## soak: the kill -9 crash tests (cmd/loopmq/crash_test.go) for many more
## rounds than make test runs (SOAK_ROUNDS, default 50 per QoS), and the
## engine's randomized churn of clients (engine/churn_test.go) for
## SOAK_CHURN per variant (default 2m) instead of a few seconds.
SOAK_ROUNDS ?= 50
SOAK_CHURN  ?= 2m
soak:
	LOOPMQ_CRASH_ROUNDS=$(SOAK_ROUNDS) $(GO) test -count=1 -timeout 60m -run 'TestCrash' -v ./cmd/loopmq/
	LOOPMQ_CHURN=$(SOAK_CHURN) $(GO) test -count=1 -timeout 60m -run 'TestChurn' -v ./engine/
