# Container Director. `make test` is what CI runs (through .ci/run).
GO ?= go

# Modules of their own, so that the plugin's module stays standard-library only.
SUBMODULES := e2e examples/spawner examples/check

# golangci-lint, pinned, built from the Go module proxy into the cache that
# also holds Traefik's build (outside the checkout).
GOLANGCI_LINT_VERSION := v2.15.0
CACHE_DIR := $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/container-director
GOLANGCI_LINT := $(CACHE_DIR)/golangci-lint-$(GOLANGCI_LINT_VERSION)/golangci-lint

.PHONY: test lint unit yaegi-test spawner-test check-examples e2e examples-up bench bench-hotpath demo screenshots

test: lint unit yaegi-test spawner-test check-examples e2e

$(GOLANGCI_LINT):
	GOBIN=$(dir $(GOLANGCI_LINT)) $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)

lint: $(GOLANGCI_LINT)
	@out="$$(gofmt -l . )"; if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@for m in $(SUBMODULES); do if [ -f $$m/go.mod ]; then echo "go vet ($$m)"; (cd $$m && $(GO) vet ./...) || exit 1; fi; done
	@cp go.mod /tmp/container-director.go.mod && $(GO) mod tidy && if ! cmp -s go.mod /tmp/container-director.go.mod; then echo "go mod tidy changed go.mod"; exit 1; fi
	@if grep -q '^require' go.mod; then echo "the plugin's go.mod must not require anything"; exit 1; fi
	$(GOLANGCI_LINT) run --config $(CURDIR)/.golangci.yml ./...

unit:
	$(GO) test -race -count=1 ./...

yaegi-test:
	scripts/yaegi-test.sh

# The reference spawner. Its Docker tests start a private dockerd
# (scripts/dockerd.sh, root) and its Kubernetes tests a real kube-apiserver
# and etcd, built (long, the first time) before the tests' own timeout
# starts; both fail under CI=true if they cannot run.
spawner-test:
	@if dir="$$(scripts/kube.sh)"; then export KUBEAPITEST_BIN_DIR="$$dir"; \
	elif [ "$$CI" = true ]; then echo "spawner-test: building kube-apiserver failed"; exit 1; \
	else echo "spawner-test: no kube-apiserver here: its tests will skip"; fi; \
	cd examples/spawner && echo "go test -race -count=1 -timeout 15m ./... (examples/spawner)" && $(GO) test -race -count=1 -timeout 15m ./...

# Every compose file through `docker compose config`, every director
# middleware in the examples through New: fast checks of the files alone.
check-examples:
	scripts/check-examples.sh

# Includes TestExamplesUp: the compose examples up on a private Docker Engine.
e2e:
	cd e2e && $(GO) test -count=1 -v -timeout 45m ./...

# Only the compose examples, up for real (part of e2e).
examples-up:
	cd e2e && $(GO) test -count=1 -v -timeout 20m -run '^TestExamplesUp$$' .

# The proxy side by side with Traefik alone, then spawn latency on a real engine.
bench:
	cd e2e && $(GO) test -count=1 -v -timeout 30m -run '^(TestBench|TestBenchSpawn|TestBenchVSCode|TestLoadingPageSwitch)$$' . -args -bench

# Where the time of one proxied request goes: interpreted, compiled, plain proxy.
bench-hotpath:
	cd e2e && $(GO) test -count=1 -run '^$$' -bench HotPath -benchtime 5000x .

demo:
	scripts/demo.sh

# The spawner's pages at every stage, light and dark, phone and desktop.
screenshots:
	cd examples/spawner && SPAWNER_SCREENSHOTS=$(CURDIR)/docs/images $(GO) test -count=1 -run '^TestScreenshots$$' .
