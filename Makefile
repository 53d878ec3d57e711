# Thin wrapper around CMake (Neovim-style). See README.md.
BUILD ?= build
PREFIX ?= /usr/local
CMAKE_FLAGS ?=
DEB_PACKAGES = cmake make gcc pkg-config liblua5.4-dev lua5.4 lua-cjson lua-cjson-dev \
               libuv1-dev lua-busted groff-base zsh git
SUDO = $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all deps install-missing test test-asan test-release test-valgrind demo install \
        uninstall bench clean deb check-packaging check-load fuzz check-fuzz check-fuzz-smoke

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
	PM_BUILD_DIR=$(BUILD) spec/run $(BUILD)/procrun
	PM_BUILD_DIR=$(BUILD) spec/run lua5.4
	PM_BUILD_DIR=$(BUILD) PROCMON_NO_PIDFD=1 spec/run $(BUILD)/procrun spec/process_spec.lua spec/capture_spec.lua \
	  spec/gc_spec.lua spec/task_spec.lua spec/spawn_spec.lua

# The suite under AddressSanitizer + UndefinedBehaviorSanitizer: procrun,
# then the sanitized procmon.so in a stock lua5.4, which needs the runtimes
# preloaded (lua5.4 is not built with them; its own leaks are not ours).
ASAN_RUNTIMES = $(shell $(CC) -print-file-name=libasan.so) $(shell $(CC) -print-file-name=libubsan.so)
test-asan: deps
	cmake -S . -B build-asan -DPM_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
	cmake --build build-asan -j2
	PM_BUILD_DIR=build-asan PM_PRELOAD="$(ASAN_RUNTIMES)" spec/run build-asan/procrun
	PM_BUILD_DIR=build-asan PM_PRELOAD="$(ASAN_RUNTIMES)" spec/run lua5.4

# CI's build: Release (-O3, NDEBUG) with warnings as errors (PM_WERROR),
# and the suite (as `make test`) on it.
RELEASE_BUILD = build-release
test-release: deps
	cmake -S . -B $(RELEASE_BUILD) -DCMAKE_BUILD_TYPE=Release -DPM_WERROR=ON
	@$(MAKE) --no-print-directory test BUILD=$(RELEASE_BUILD)

# Specs run with the busted process under valgrind's memcheck (children
# unwrapped): any memory error or definitely-lost block fails. valgrind has
# no pidfd_open, so these also cover the SIGCHLD fallback.
VALGRIND_SPECS = spec/process_spec.lua spec/capture_spec.lua spec/cache_spec.lua \
                 spec/monitor_spec.lua spec/session_spec.lua spec/gc_spec.lua \
                 spec/task_spec.lua spec/errors_spec.lua spec/json_spec.lua \
                 spec/memcheck_spec.lua spec/spawn_spec.lua spec/bounds_spec.lua
VALGRIND = valgrind -q --child-silent-after-fork=yes --leak-check=full \
           --show-leak-kinds=definite --errors-for-leak-kinds=definite \
           --log-file=$(BUILD)/valgrind/%p.log
test-valgrind: deps all
	@$(MAKE) --no-print-directory install-missing PACKAGES=valgrind
	rm -rf $(BUILD)/valgrind && mkdir -p $(BUILD)/valgrind
	PM_WRAP="$(VALGRIND)" spec/run $(BUILD)/procrun $(VALGRIND_SPECS)
	@if grep -h '^==[0-9]*==' $(BUILD)/valgrind/*.log; then \
	  echo "valgrind: errors above (logs in $(BUILD)/valgrind)"; exit 1; \
	else echo "valgrind: no errors, nothing definitely lost"; fi

# 16 procrun processes x 200 monitored children, counting in shared cache
# keys: every record consistent and every counter exact (spec/load.lua).
check-load: deps all
	$(BUILD)/procrun spec/load.lua 16 200

# libFuzzer targets (fuzz/): each runs FUZZ_SECONDS (60) on its seeds;
# check-fuzz-smoke (CI) runs each for 10 s.
FUZZ_BUILD = build-fuzz
FUZZ_SECONDS ?= 60
fuzz: deps
	@$(MAKE) --no-print-directory install-missing PACKAGES="clang libclang-rt-dev"
	cmake -S . -B $(FUZZ_BUILD) -DPM_FUZZ=ON -DCMAKE_C_COMPILER=clang \
	  -DCMAKE_BUILD_TYPE=RelWithDebInfo
	cmake --build $(FUZZ_BUILD) --target fuzz -j2
check-fuzz: fuzz
	fuzz/run $(FUZZ_BUILD) $(FUZZ_SECONDS)
check-fuzz-smoke: fuzz
	fuzz/run $(FUZZ_BUILD) 10

demo: deps all
	$(BUILD)/procrun scripts/examples/parallel.lua

# Every benchmark: each figure, its floor from the same run and the ratio,
# into bench/RESULTS.md (bench/run).
bench: deps all
	@$(MAKE) --no-print-directory install-missing PACKAGES="hyperfine time"
	bench/run

# PREFIX and DESTDIR are read here, at install time (not only by the first
# configure): `make install PREFIX=/opt/x DESTDIR=/tmp/stage` after a plain
# `make` stages /tmp/stage/opt/x/bin/procrun.
install: all
	DESTDIR="$(DESTDIR)" cmake --install $(BUILD) --prefix "$(PREFIX)"

# Removes what the last `make install` listed (under the same DESTDIR), and
# procrun's own share/procrun directory once empty.
uninstall:
	sed 's|^|$(DESTDIR)|' $(BUILD)/install_manifest.txt | xargs -r rm -f
	sed -n 's|^\(.*/share/procrun\)/.*|$(DESTDIR)\1|p' $(BUILD)/install_manifest.txt | sort -u | \
	  xargs -r -I{} find {} -depth -type d -empty -delete

# The Debian package, built with CPack (see cmake/packaging.cmake) in its own
# tree with Debian's build flags: build-deb/procrun_<version>_<arch>.deb.
DEB_BUILD = build-deb
DEB_TOOLS = dpkg-dev file
deb:
	@$(MAKE) --no-print-directory deps
	@$(MAKE) --no-print-directory install-missing PACKAGES="$(DEB_TOOLS)"
	export DEB_BUILD_MAINT_OPTIONS=hardening=+all; \
	cmake -S . -B $(DEB_BUILD) -DPM_DEB=ON -DCMAKE_BUILD_TYPE=None \
	  -DCMAKE_INSTALL_PREFIX=/usr \
	  -DLUA_CMOD_DIR=lib/$$(dpkg-architecture -qDEB_HOST_MULTIARCH)/lua/5.4 \
	  -DZSH_COMPLETION_DIR=share/zsh/vendor-completions \
	  -DCMAKE_C_FLAGS="$$(dpkg-buildflags --get CPPFLAGS) $$(dpkg-buildflags --get CFLAGS)" \
	  -DCMAKE_EXE_LINKER_FLAGS="$$(dpkg-buildflags --get LDFLAGS)" \
	  -DCMAKE_MODULE_LINKER_FLAGS="$$(dpkg-buildflags --get LDFLAGS)"
	cmake --build $(DEB_BUILD) -j2
	rm -f $(DEB_BUILD)/procrun_*.deb
	cd $(DEB_BUILD) && cpack -G DEB
	@ls $(DEB_BUILD)/procrun_*.deb

# Slow checks, run by CI: the .deb (lintian, apt-get install and remove on
# this machine) and the rockspec (luarocks make into a temporary tree).
check-packaging: deb
	@$(MAKE) --no-print-directory install-missing PACKAGES="lintian luarocks"
	PM_CHECK_PACKAGING=1 spec/run lua5.4 spec/packaging_spec.lua

clean:
	rm -rf $(BUILD) build-asan $(RELEASE_BUILD) $(FUZZ_BUILD) $(DEB_BUILD) build.luarocks
