# redpipe: `make demo` runs the walkthroughs, `make test` runs every test.
# Both install redis-server (Debian packages) when it is missing; Go modules
# come through the module proxy.

GO      ?= go
# Modules with their own go.mod: the core stays free of third-party code.
MODULES := . cmd/redpipe bench

.PHONY: all deps demo demo-cluster test check fmt vet staticcheck unit fuzz fuzz-short fault fault-short soak

all: test

deps:
	@if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then \
		echo "redis-server is missing: installing redis-server and redis-tools with apt-get"; \
		SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y --no-install-recommends redis-server redis-tools; \
	fi
	@redis-server --version

# The single-node walkthrough, then the cluster one on a throwaway cluster
# of three masters.
demo: deps
	cd cmd/redpipe && $(GO) run . demo && $(GO) run . demo -cluster

demo-cluster: deps
	cd cmd/redpipe && $(GO) run . demo -cluster

test: deps check unit fuzz-short fault-short

check: fmt vet staticcheck

fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

vet:
	@for m in $(MODULES); do (cd $$m && $(GO) vet ./...) || exit 1; done

# Pinned, and run without touching any module's requirements.
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

staticcheck:
	@for m in $(MODULES); do (cd $$m && $(GO) run $(STATICCHECK) ./...) || exit 1; done

unit:
	@for m in $(MODULES); do (cd $$m && $(GO) test -race -count=1 ./...) || exit 1; done

# make test fuzzes briefly; make fuzz for a minute per target.
fuzz-short:
	scripts/fuzz.sh ./internal/resp/ FuzzReader 20s
	scripts/fuzz.sh ./internal/resp/ FuzzHasValue 10s
	scripts/fuzz.sh . FuzzParseURL 10s

fuzz:
	scripts/fuzz.sh ./internal/resp/ FuzzReader 60s
	scripts/fuzz.sh ./internal/resp/ FuzzHasValue 60s
	scripts/fuzz.sh . FuzzParseURL 60s
	scripts/fuzz.sh ./internal/topology/ FuzzParse 60s

# bench compares redpipe with go-redis and rueidis on a throwaway
# redis-server and writes bench/RESULTS.md and bench/results.json. The bench
# module is separate so that the core keeps no third-party dependencies.
# Nine repetitions: on a shared machine the median of five still moved a
# ratio by a tenth from one run to the next.
.PHONY: bench
bench: deps
	cd bench && $(GO) run . -reps 9 -md RESULTS.md -json results.json

# bench-pinned runs the sequential cases with the client and the server on
# one CPU (taskset), where a thread wakes fast: the other state a host can
# be in, which RESULTS.md may not show.
.PHONY: bench-pinned
bench-pinned: deps
	cd bench && $(GO) run -exec 'taskset -c 0' . -scenarios S1,S2 -reps 9 -md RESULTS-pinned.md -json results-pinned.json

# bench-fastwake runs the cases that depend on the host's state with
# every CPU on, the guest's idle CPUs made to poll for 200µs before they
# halt, so that a thread wakes without the hypervisor: the fast-wake state
# on a virtual machine whose idle CPUs use the haltpoll cpuidle driver. It
# needs root, and puts the setting back however the run ends (an error, a
# panic, an interrupt or SIGTERM; SIGKILL aside).
.PHONY: bench-fastwake
bench-fastwake: deps
	cd bench && $(GO) run . -haltpoll 200us -scenarios S1,S2,S8 -reps 5 -md RESULTS-fastwake.md -json results-fastwake.json

# The fault suite: the client through a fault-injecting proxy, with the
# server killed every few seconds; then the cluster client while slots move
# between masters and masters fail over. Each phase's last line counts its
# anomalies.
fault: deps
	$(GO) run ./internal/faultsuite -duration 90s
	$(GO) run ./internal/faultsuite -phase cluster -duration 60s -large-pipelines 10

fault-short: deps
	$(GO) run ./internal/faultsuite -duration 20s -min-faults 20 -min-commands 20000 -min-partial 1
	$(GO) run ./internal/faultsuite -phase cluster -duration 15s -failover-every 5s -large-pipelines 10 -min-reshards 5 -min-failovers 2 -min-commands 20000 -min-partial 1

# Many goroutines against one server for two minutes: invariants, errors,
# heap and RSS growth.
soak: deps
	$(GO) run ./internal/soak -duration 120s
