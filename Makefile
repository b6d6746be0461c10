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

.PHONY: all install serve test test-cpp test-py lint-proto typecheck clean

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

test: install test-cpp lint-proto test-py

test-cpp:
	cmake -S csrc -B build/cpp -G Ninja -DTOKENWIRE_BUILD_TESTS=ON -DCMAKE_BUILD_TYPE=Release >/dev/null
	cmake --build build/cpp
	ctest --test-dir build/cpp --output-on-failure

lint-proto:
	$(BUF) lint
	$(BUF) format --diff --exit-code

# pytest exits 5 when it collects nothing; that is a failure here too (any non-zero is).
test-py: install
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

typecheck: install
	$(BIN)/python -m mypy server/tokenwire

clean:
	rm -rf build $(VENV)
