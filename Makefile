# Thin wrapper around CMake (Neovim-style). See README.md.
BUILD ?= build
PREFIX ?= /usr/local
CMAKE_FLAGS ?=
DEB_PACKAGES = cmake make gcc pkg-config liblua5.4-dev lua5.4 lua-cjson lua-cjson-dev \
               libuv1-dev lua-busted
SUDO = $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all deps install-missing test test-asan demo install uninstall bench clean

all: $(BUILD)/procrun

$(BUILD)/Makefile:
	cmake -S . -B $(BUILD) -DCMAKE_INSTALL_PREFIX=$(PREFIX) $(CMAKE_FLAGS)

$(BUILD)/procrun: $(BUILD)/Makefile FORCE
	cmake --build $(BUILD) -j2

FORCE:

# Installs only the Debian packages that are missing.
deps:
	@$(MAKE) --no-print-directory install-missing PACKAGES="$(DEB_PACKAGES)"

install-missing:
	@missing=$$(for p in $(PACKAGES); do \
	  dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; \
	done); \
	if [ -n "$$missing" ]; then \
	  echo "installing:" $$missing; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

test: deps all
	spec/run $(BUILD)/procrun
	spec/run lua5.4
	PROCMON_NO_PIDFD=1 spec/run $(BUILD)/procrun spec/process_spec.lua spec/capture_spec.lua \
	  spec/gc_spec.lua spec/task_spec.lua

# The suite under AddressSanitizer + UndefinedBehaviorSanitizer.
test-asan: deps
	cmake -S . -B build-asan -DPM_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
	cmake --build build-asan -j2
	PM_BUILD_DIR=build-asan spec/run build-asan/procrun

demo: deps all
	$(BUILD)/procrun scripts/examples/parallel.lua

# Each benchmark prints its figure, its floor from the same run and the ratio.
bench: deps all
	@$(MAKE) --no-print-directory install-missing PACKAGES="hyperfine time"
	bench/run.sh
	bench/cache.sh

install: all
	cmake --install $(BUILD)

uninstall:
	xargs rm -f < $(BUILD)/install_manifest.txt

clean:
	rm -rf $(BUILD) build-asan
