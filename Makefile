# redpipe: `make demo` runs the walkthrough, `make test` runs every test.
# Both install redis-server (Debian packages) when it is missing; Go modules
# come through the module proxy.

GO      ?= go
FUZZTIME ?= 20s
# Modules with their own go.mod: the core stays free of third-party code.
MODULES := . cmd/redpipe

.PHONY: all deps demo test check fmt vet unit fuzz

all: test

deps:
	@if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then \
		echo "redis-server is missing: installing redis-server and redis-tools with apt-get"; \
		SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y --no-install-recommends redis-server redis-tools; \
	fi
	@redis-server --version

demo: deps
	cd cmd/redpipe && $(GO) run . demo

test: deps check unit fuzz

check: fmt vet

fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

vet:
	@for m in $(MODULES); do (cd $$m && $(GO) vet ./...) || exit 1; done

unit:
	@for m in $(MODULES); do (cd $$m && $(GO) test -race -count=1 ./...) || exit 1; done

fuzz:
	$(GO) test -run='^$$' -fuzz='^FuzzReader$$' -fuzztime=$(FUZZTIME) ./internal/resp/
