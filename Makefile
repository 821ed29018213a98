# Thin wrapper over Meson + Ninja. `make run` and `make test` work on a fresh
# Debian 12 machine: both install their own dependencies first.
BUILD      ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
# Integration test units (classes, or modules with fixtures) run at once:
# most of their time is spent waiting on brokers, apps and timeouts.
INTEGRATION_JOBS ?= 3
# Seconds each libFuzzer harness runs in `make fuzz` (make test's short run).
FUZZ_SECONDS ?= 10
# Debian's own interpreter: the one python3-django is installed for, even
# when another python3 comes first on PATH.
PYTHON     ?= /usr/bin/python3

.PHONY: all deps build asan test unit integration browser screenshots fuzz bench-smoke run run-drf run-sites clean format lint docs

all: build

deps:
	@scripts/install-deps

build: deps
	@[ -f $(BUILD)/build.ninja ] || meson setup $(BUILD) >/dev/null
	@ninja -C $(BUILD)

asan: deps
	@[ -f $(ASAN_BUILD)/build.ninja ] || meson setup $(ASAN_BUILD) -Db_sanitize=address,undefined -Db_lundef=false >/dev/null
	@ninja -C $(ASAN_BUILD)

# Unit tests run under valgrind: a leak or an invalid access fails them.
unit: build
	meson test -C $(BUILD) --suite unit --print-errorlogs \
	  --wrapper 'valgrind --leak-check=full --errors-for-leak-kinds=definite,indirect --error-exitcode=1 --quiet'

# Integration tests run against the sanitizer build, so that any memory error
# or undefined behaviour on a real request path fails the run.
integration: asan
	RESTSPY_BIN=$(abspath $(ASAN_BUILD))/restspy PYTHON=$(PYTHON) \
	  ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	  $(PYTHON) tests/integration/run.py --shuffle --jobs $(INTEGRATION_JOBS)

# The web console in a real browser (tests/browser/test_*.mjs, one file at a
# time): Debian's chromium driven by playwright-core, pinned in
# tests/browser/package-lock.json and installed here with npm ci (no browser
# is downloaded), against the sanitizer build. Each file starts its own
# sample app and restspy on loopback ports. No npm or no chromium is a
# failure, never a skip (scripts/install-deps installs both).
# Screenshots go to BROWSER_SHOTS; `make screenshots` refreshes docs/images.
CHROMIUM      ?= /usr/bin/chromium
BROWSER_SHOTS ?= $(ASAN_BUILD)/screenshots
browser: asan
	@command -v npm >/dev/null || { echo "browser: npm not found (scripts/install-deps)"; exit 1; }
	@[ -x $(CHROMIUM) ] || { echo "browser: $(CHROMIUM) not found (scripts/install-deps)"; exit 1; }
	@cd tests/browser && { [ node_modules/.package-lock.json -nt package-lock.json ] || \
	  npm ci --no-audit --no-fund --loglevel=error; }
	@cd tests/browser && for f in test_*.mjs; do \
	  RESTSPY_BIN=$(abspath $(ASAN_BUILD))/restspy PYTHON=$(PYTHON) CHROMIUM=$(CHROMIUM) \
	  SCREENSHOTS=$(abspath $(BROWSER_SHOTS)) ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
	  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	  node --test $$f > ../../$(ASAN_BUILD)/browser-$$f.log 2>&1; rc=$$?; \
	  grep -E '^# (tests|pass|fail)' ../../$(ASAN_BUILD)/browser-$$f.log | tr '\n' ' ' | sed "s/^/$$f: /"; echo; \
	  [ $$rc -eq 0 ] || { cat ../../$(ASAN_BUILD)/browser-$$f.log; exit 1; }; \
	done

screenshots:
	$(MAKE) browser BROWSER_SHOTS=docs/images

# libFuzzer harnesses (fuzz/, clang with ASan and UBSan): each starts from
# its committed seeds (fuzz/corpus/NAME, read only) and runs FUZZ_SECONDS;
# what it finds new is kept in $(FUZZ_BUILD)/corpus-NAME for the next run.
# A crash, a sanitizer report or a leak fails the run and leaves the input
# as $(FUZZ_BUILD)/crash-* (add it to the seeds once fixed).
FUZZERS = proxy redact coding import collect
fuzz: deps
	@[ -f $(FUZZ_BUILD)/build.ninja ] || CC=clang meson setup $(FUZZ_BUILD) -Dfuzz=true \
	  -Db_sanitize=address,undefined -Db_lundef=false >/dev/null
	@ninja -C $(FUZZ_BUILD) > $(FUZZ_BUILD)/build.log 2>&1 || { cat $(FUZZ_BUILD)/build.log; exit 1; }
	@for f in $(FUZZERS); do \
	  mkdir -p $(FUZZ_BUILD)/corpus-$$f; \
	  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 $(FUZZ_BUILD)/fuzz_$$f \
	    -max_total_time=$(FUZZ_SECONDS) -timeout=10 -artifact_prefix=$(FUZZ_BUILD)/ \
	    $(FUZZ_BUILD)/corpus-$$f fuzz/corpus/$$f > $(FUZZ_BUILD)/fuzz_$$f.log 2>&1 \
	  || { tail -n 60 $(FUZZ_BUILD)/fuzz_$$f.log; echo "fuzz_$$f: FAILED"; exit 1; }; \
	  echo "fuzz_$$f: $$(grep -o 'Done [0-9]* runs' $(FUZZ_BUILD)/fuzz_$$f.log), no crash"; \
	done

# Keeps bench/run working (every configuration, the RSS, limit and lag runs,
# all in their smallest form); its figures mean nothing and are not kept. It
# fails when restspy loses a capture, errors or does not exit 0 on SIGTERM.
# Then bench/growth.py --quick (100,000 rows, < 30 s): fails when a query
# finds nothing, the store loses rows or retention prunes nothing.
bench-smoke: build
	@d=$$(mktemp -d) && RESTSPY_BIN=$(abspath $(BUILD))/restspy $(PYTHON) bench/run --quick \
	  --results $$d > $$d/out.txt 2>$$d/log.txt; rc=$$?; \
	  if [ $$rc -ne 0 ]; then cat $$d/log.txt $$d/out.txt; fi; \
	  grep -q '^### Targets' $$d/out.txt && [ $$rc -eq 0 ] && echo "bench smoke run: ok"; \
	  ok=$$?; rm -rf $$d; exit $$ok
	@d=$$(mktemp -d) && $(PYTHON) bench/growth.py --quick --build $(abspath $(BUILD)) \
	  --results $$d > $$d/out.txt 2>$$d/log.txt; rc=$$?; \
	  if [ $$rc -ne 0 ]; then cat $$d/log.txt $$d/out.txt; fi; \
	  grep -q '^### Growth' $$d/out.txt && [ $$rc -eq 0 ] && echo "growth smoke run: ok"; \
	  ok=$$?; rm -rf $$d; exit $$ok

test: lint unit integration browser fuzz bench-smoke

run: build
	@PYTHON=$(PYTHON) scripts/demo

# The sample app's views decorated with the Django adapter and restspy collect
# (no proxy); see adapters/django/README.md.
run-drf: build
	@PYTHON=$(PYTHON) scripts/demo-drf

# Two sites replicating through RabbitMQ queues and shovels (see docs/replication.md);
# MODE=drf: each site is the app in its drf mode and restspy collect, no proxy.
MODE ?= proxy
run-sites: build
	@PYTHON=$(PYTHON) MODE=$(MODE) scripts/demo-sites

format:
	clang-format -i src/*/*.c src/*/*.h tests/unit/*.c tests/unit/*/*.c fuzz/*.c

# Static checks: cppcheck clean and the committed .clang-format respected.
lint: deps
	cppcheck --quiet --error-exitcode=1 --enable=warning,portability,performance --std=c11 \
	  --suppress=missingIncludeSystem -I src src fuzz
	clang-format --dry-run --Werror src/*/*.c src/*/*.h tests/unit/*.c tests/unit/*/*.c fuzz/*.c
	$(PYTHON) scripts/check-layers

# The architecture picture from the real includes (scripts/check-layers
# --dot); test_docs fails when the committed graph differs from the code's.
docs: deps
	$(PYTHON) scripts/check-layers --dot > docs/architecture.dot
	dot -Tsvg docs/architecture.dot > docs/architecture.svg

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
