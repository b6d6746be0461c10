# The two commands a new user needs:
#   make serve   install everything and serve the built-in demo models on 127.0.0.1:50051
#   make test    install everything and run the whole suite (C++, proto lint, Python)
# Everything lands in .venv/ and build/; pip's and npm's caches make repeat installs cheap.

PYTHON      ?= python3
VENV        := .venv
BIN         := $(VENV)/bin
DEPS_STAMP  := $(VENV)/.deps-installed
PKG_STAMP   := $(VENV)/.package-installed
HOST        ?= 127.0.0.1
PORT        ?= 50051
BUF         := npx --yes @bufbuild/buf@1.47.2
PKG_SOURCES := $(shell find server csrc proto -type f \( -name '*.py' -o -name '*.cpp' -o -name '*.h' -o -name '*.proto' -o -name 'CMakeLists.txt' \) 2>/dev/null) CMakeLists.txt pyproject.toml

.PHONY: all install serve test test-cpp test-py lint-py lint-proto typecheck clean

all: install

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(DEPS_STAMP): requirements/runtime.txt requirements/build.txt requirements/dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements/dev.txt
	touch $@

# A real (non-editable) install, so tests exercise what users get; the persistent build
# directory keeps C++ rebuilds incremental.
$(PKG_STAMP): $(DEPS_STAMP) $(PKG_SOURCES)
	$(BIN)/pip install --quiet --no-build-isolation --no-deps -Cbuild-dir=build/py .
	touch $@

install: $(PKG_STAMP)

serve: install
	$(BIN)/tokenwire serve --demo --host $(HOST) --port $(PORT)

test: install lint-py typecheck test-cpp lint-proto breaking-proto test-py test-clients ghz-smoke

test-cpp:
	cmake -S csrc -B build/cpp -G Ninja -DTOKENWIRE_BUILD_TESTS=ON -DCMAKE_BUILD_TYPE=Release >/dev/null
	cmake --build build/cpp
	ctest --test-dir build/cpp --output-on-failure

lint-proto:
	$(BUF) lint
	$(BUF) format --diff --exit-code

# ruff: lint (rules in pyproject.toml) and the formatter's check, over the Python tree.
lint-py: $(DEPS_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# pytest exits 5 when it collects nothing; that is a failure here too (any non-zero is).
test-py: install
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# mypy --strict on the installed package (the generated tokenwire.v1 modules only exist there).
typecheck: install
	cd build && ../$(BIN)/python -m mypy --config-file ../pyproject.toml -p tokenwire

clean:
	rm -rf build $(VENV)

# ---- Clients (Go, TypeScript, Java), ghz load tests, protocol stability (docs/clients.md) ----
# The Go, Node.js and Java/Maven toolchains come with the machine; everything they need is
# fetched here: Go modules and the protoc plugins from the Go proxy (into build/tools/bin),
# npm packages (clients/node/node_modules), Maven artifacts incl. protoc (~/.m2).
GO                         ?= go
NPM                        ?= npm
MVN                        ?= mvn
TOOLS_BIN                  := $(CURDIR)/build/tools/bin
GHZ_VERSION                := v0.121.0
PROTOC_GEN_GO_VERSION      := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.2
GHZ_STAMP                  := $(TOOLS_BIN)/.ghz-$(GHZ_VERSION)
PROTOC_GEN_GO_STAMP        := $(TOOLS_BIN)/.protoc-gen-go-$(PROTOC_GEN_GO_VERSION)-grpc-$(PROTOC_GEN_GO_GRPC_VERSION)
NODE_STAMP                 := clients/node/node_modules/.installed
DEMO_DIR                   := $(CURDIR)/build/demo-models
# The client tests start their own `tokenwire serve --demo --port 0` with these.
CLIENT_ENV                 := TOKENWIRE_BIN=$(CURDIR)/$(BIN)/tokenwire TOKENWIRE_DEMO_DIR=$(DEMO_DIR)
RELEASED_PROTO             := proto/released/tokenwire-v1.binpb
# ghz smoke in `make test`: every unary RPC and GenerateStream, zero errors required. Configs
# of RPCs not implemented yet are skipped (comma-separated names, * as a prefix wildcard);
# reflection joins the modes once the server resolves method symbols (docs/clients.md).
GHZ_SMOKE_SKIP             ?=
GHZ_SMOKE_MODES            ?= protoset,reflection
LOAD_ARGS                  ?=
STREAM_LOAD_ARGS           ?= --duration 20 --concurrency 8 --warmup 8 --method sample --temperature 0.8 --top-p 0.95 --seed 1 --max-new-tokens 64

.PHONY: test-clients test-go test-node test-java gen-go check-gen-go ghz-smoke load breaking-proto release-proto

$(PROTOC_GEN_GO_STAMP):
	GOBIN=$(TOOLS_BIN) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	GOBIN=$(TOOLS_BIN) $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
	touch $@

$(GHZ_STAMP):
	GOBIN=$(TOOLS_BIN) $(GO) install github.com/bojand/ghz/cmd/ghz@$(GHZ_VERSION)
	touch $@

# tests/ray runs ghz through the Ray proxy, so the Python suite needs the binary too.
test-py: $(GHZ_STAMP)

$(NODE_STAMP): clients/node/package.json clients/node/package-lock.json
	cd clients/node && $(NPM) ci --no-audit --no-fund
	touch $@

test-clients: test-go test-node test-java

# The Go module ships its generated stubs (clients/go/tokenwirev1, committed: `go get` runs
# no code generators); check-gen-go fails when they no longer match proto/.
gen-go: $(PROTOC_GEN_GO_STAMP)
	PATH="$(TOOLS_BIN):$$PATH" $(BUF) generate --template clients/go/buf.gen.yaml -o clients/go

check-gen-go: $(PROTOC_GEN_GO_STAMP)
	rm -rf build/gen-check/go
	PATH="$(TOOLS_BIN):$$PATH" $(BUF) generate --template clients/go/buf.gen.yaml -o build/gen-check/go
	@diff -r build/gen-check/go/tokenwirev1 clients/go/tokenwirev1 >/dev/null || { \
	  diff -r build/gen-check/go/tokenwirev1 clients/go/tokenwirev1 | head -40; \
	  echo "clients/go/tokenwirev1 does not match proto/: run 'make gen-go' and commit the result"; exit 1; }

test-go: install check-gen-go
	cd clients/go && $(GO) vet ./... && $(CLIENT_ENV) $(GO) test -count=1 ./...

test-node: install $(NODE_STAMP)
	cd clients/node && $(NPM) run build && $(CLIENT_ENV) $(NPM) test

test-java: install
	cd clients/java && $(CLIENT_ENV) $(MVN) -B -ntp -Dstyle.color=never test

ghz-smoke: install $(GHZ_STAMP)
	$(BIN)/python bench/ghz/run.py --smoke --modes $(GHZ_SMOKE_MODES) --skip '$(GHZ_SMOKE_SKIP)' \
	  --ghz $(TOOLS_BIN)/ghz --demo-dir $(DEMO_DIR) \
	  --stream-load "--count 24 --concurrency 4 --max-new-tokens 16 --fail-on-error"

# Every ghz config, by reflection and from a protoset, then the streaming benchmark (TTFT,
# inter-token latency), all against one demo server. Reports: build/ghz/reports/.
load: install $(GHZ_STAMP)
	$(BIN)/python bench/ghz/run.py --modes reflection,protoset --ghz $(TOOLS_BIN)/ghz \
	  --demo-dir $(DEMO_DIR) $(LOAD_ARGS) --stream-load "$(STREAM_LOAD_ARGS) --output build/ghz/stream_load.json"

# Breaking changes against the last released protocol: a buf image of it committed under
# proto/released/ (docs/clients.md says why not a git tag). `make release-proto` at a release.
breaking-proto:
	$(BUF) breaking --against $(RELEASED_PROTO)

release-proto:
	$(BUF) build -o $(RELEASED_PROTO)
