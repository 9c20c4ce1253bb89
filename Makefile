# comfy-image: build, test, lint, bench, demo.
export PATH := $(PATH):/usr/local/go/bin:$(HOME)/go/bin
GO ?= go
BIN := bin/comfy-image

.PHONY: build test sweep lint bench faults demo clean

build:
	$(GO) build -o $(BIN) ./cmd/comfy-image

# The README's test command: what CI runs after installing system packages.
# The fuzz run is bounded by a count, not a duration: a duration races Go
# 1.26's fuzz coordinator (golang/go#75804: a spurious "context deadline
# exceeded" failure with no crasher). The suite itself runs once, inside
# the sentinel-secret sweep.
test: lint sweep
	$(GO) test -run '^$$' -fuzz FuzzParse -fuzztime 200000x ./versions
	$(GO) test -run '^$$' -fuzz FuzzWheelUnpack -fuzztime 5000x ./layers
	$(GO) test -run '^$$' -fuzz FuzzCheckoutTree -fuzztime 2000x ./realize

# The whole suite (go test ./...) under the sentinel-secret sweep of issue
# 8: one random secret in HF_TOKEN, CIVITAI_API_TOKEN, the registry password
# and a repository URL's token; afterwards every file the tests and the
# tool wrote, and every captured output, is grepped for it (see .ci/sweep).
# Run a part of it with SWEEP_PKGS='./cmd/comfy-image' make sweep.
SWEEP_PKGS ?= ./...
sweep:
	GO=$(GO) bash .ci/sweep $(SWEEP_PKGS)

lint:
	@out=$$(gofmt -l cmd versions realize layers internal); test -z "$$out" || { echo "gofmt: these need formatting: $$out"; exit 1; }
	$(GO) vet ./...
	@command -v staticcheck >/dev/null || $(GO) install honnef.co/go/tools/cmd/staticcheck@v0.8.2
	staticcheck ./...

# The fault suite of issue 8 on its own, with the kill fuzz of realize and
# of build at 20 points each (`make test` runs 8). -v prints the seed;
# replay a run with COMFY_KILL_SEED=N make faults.
faults:
	COMFY_KILL_POINTS=$${COMFY_KILL_POINTS:-20} $(GO) test -count=1 -v -timeout 40m \
	  -run 'KillFuzz|Damaged|Fault|Retries|Repacks|EditedModel|Touched|Server|FullDisk|FileModel|Resume' ./cmd/comfy-image ./realize/...

bench: build
	$(GO) test -run '^$$' -bench . -benchmem ./...
	bash bench/realize-noop.sh $(BIN)

# Runs the main job on a self-contained example: local git repositories
# made by the demo itself, locked (and realized/built by later steps).
demo: build
	bash testdata/demo/demo.sh $(BIN)

clean:
	rm -rf bin demo-out
