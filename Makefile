# comfy-image: build, test, lint, bench, demo.
export PATH := $(PATH):/usr/local/go/bin:$(HOME)/go/bin
GO ?= go
BIN := bin/comfy-image

.PHONY: build test sweep lint bench bench-large faults demo clean

build:
	$(GO) build -o $(BIN) ./cmd/comfy-image

# The README's test command: what CI runs after installing system packages.
# The fuzz run is bounded by a count, not a duration: a duration races Go
# 1.26's fuzz coordinator (golang/go#75804: a spurious "context deadline
# exceeded" failure with no crasher). The suite itself runs once, inside
# the sentinel-secret sweep (45-minute go test timeout: CI has 90; the cmd
# package is the long pole on 2 cores).
test: lint sweep
	$(GO) test -run '^$$' -fuzz FuzzParse -fuzztime 200000x ./versions
	$(GO) test -run '^$$' -fuzz FuzzWheelUnpack -fuzztime 5000x ./layers/materialize
	$(GO) test -run '^$$' -fuzz FuzzCheckoutTree -fuzztime 2000x ./realize

# The whole suite (go test ./...) under the sentinel-secret sweep of issue
# 8: one random secret in HF_TOKEN, CIVITAI_API_TOKEN, the registry password
# and a repository URL's token; afterwards every file the tests and the
# tool wrote, and every captured output, is grepped for it (see .ci/sweep).
# Run a part of it with SWEEP_PKGS='./cmd/comfy-image' make sweep.
SWEEP_PKGS ?= ./...
SWEEP_TIMEOUT ?= 45m
sweep:
	GO=$(GO) SWEEP_TIMEOUT=$(SWEEP_TIMEOUT) bash .ci/sweep $(SWEEP_PKGS)

lint:
	@out=$$(gofmt -l cmd versions realize layers internal); test -z "$$out" || { echo "gofmt: these need formatting: $$out"; exit 1; }
	$(GO) vet ./...
	$(GO) mod tidy -diff
	@command -v staticcheck >/dev/null || $(GO) install honnef.co/go/tools/cmd/staticcheck@v0.8.2
	staticcheck ./...

# The fault suite of issue 8 on its own, with the kill fuzz of realize and
# of build at 20 points each (`make test` runs 8). -v prints the seed;
# replay a run with COMFY_KILL_SEED=N make faults.
faults:
	COMFY_KILL_POINTS=$${COMFY_KILL_POINTS:-20} $(GO) test -count=1 -v -timeout 40m \
	  -run 'KillFuzz|Damaged|Fault|Retries|Repacks|EditedModel|Touched|Server|FullDisk|FileModel|Resume' ./cmd/comfy-image ./realize/...

# bench/bench.sh writes bench/RESULTS.md (issue 9's table: comfy-image
# against buildah, skopeo, remote.Write and openssl on one docker-registry);
# about 6 minutes at the default 20 nodes and 4 x 256 MB models.
bench: build
	bash bench/bench.sh $(BIN)
	$(GO) test -run '^$$' -bench . -benchmem ./...
	bash bench/realize-noop.sh $(BIN)

# The large size of issue 9 (100 nodes, 2 x 2 GB models): about 25 minutes
# and 30 GB of disk under bench-out/; adds its section to bench/RESULTS.md.
bench-large: build
	BENCH_NODES=100 BENCH_MODELS=2 BENCH_MODEL_MB=2048 bash bench/bench.sh $(BIN)

# The whole story on a fresh Debian 12 machine (as root), nothing before it:
# installs the missing system packages, makes a Debian + python3 base once
# (debootstrap + comfy-image base; cached in /var/tmp/comfy-image-base),
# builds a self-contained example's images, runs the app image in podman
# with the models image mounted and sends it one RunPod /runsync job.
demo:
	bash testdata/demo/demo.sh

clean:
	rm -rf bin demo-out bench-out
