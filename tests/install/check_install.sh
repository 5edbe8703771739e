#!/usr/bin/env bash
# Checks what `cmake --install` and `cpack -G DEB` produce.
#
#   bash tests/install/check_install.sh BUILD_DIR SOURCE_DIR
#
# 1. Installs BUILD_DIR into a temporary prefix, checks every expected file
#    (libraries with SONAME and version, only telespool_* exported, header,
#    telespool.pc, CMake package, program, man pages, systemd units, Python
#    binding), renders the man pages, verifies the units, then MOVES the tree
#    elsewhere and builds and runs consumers against the moved copy: through
#    pkg-config, pkg-config --static, find_package (shared and static) and
#    the Python binding; and the public-API tests (tests/test_api.c) built
#    against the moved header and shared library alone.
# 2. Configures its own build with -DCMAKE_INSTALL_PREFIX=/usr in a temporary
#    directory, runs cpack -G DEB, and checks the package: contents, control
#    fields, that Depends names the package of every library its programs
#    load, the ldconfig trigger, the units, and a consumer built against the
#    extracted package.
# 3. Only as root with CI=true or TELESPOOL_DPKG_TEST=1 (it changes the
#    machine): dpkg -i, the Python binding through the system loader with no
#    environment, consumers against the system install, then dpkg -r.
#
# Prints PASS/FAIL/NOTE lines; exits 1 if anything failed.  JOBS (default 2)
# is the build parallelism.  In a sanitizer build (TELESPOOL_SANITIZE in
# BUILD_DIR's cache) the consumers of part 1 are built with the same
# compiler and sanitizer flags, and the Python check is skipped.
set -uo pipefail

if [ $# -ne 2 ]; then
	echo "usage: $0 BUILD_DIR SOURCE_DIR" >&2
	exit 2
fi
build=$(cd "$1" && pwd) || exit 2
src=$(cd "$2" && pwd) || exit 2
jobs=${JOBS:-2}
started=$(date +%s)

failures=0
pass() { echo "PASS: $*"; }
fail() {
	echo "FAIL: $*"
	failures=$((failures + 1))
}
note() { echo "NOTE: $*"; }
# check DESCRIPTION COMMAND...: PASS if the command succeeds, else FAIL with
# its output.
check() {
	local what=$1 out
	shift
	if out=$("$@" 2>&1); then
		pass "$what"
	else
		fail "$what"
		printf '%s\n' "$out" | sed 's/^/    /' | tail -n 40
	fi
}
have() { command -v "$1" >/dev/null 2>&1; }
# cache VAR DIR: a variable's value in DIR/CMakeCache.txt.
cache() { sed -n "s/^$1:[A-Z]*=//p" "$2/CMakeCache.txt" | head -n 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/telespool-install.XXXXXX") || exit 2
dpkg_installed_by_us=0
cleanup() {
	if [ "$dpkg_installed_by_us" = 1 ]; then
		dpkg -r telespool >/dev/null 2>&1 || true
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

version=$(sed -n 's/^project(telespool VERSION \([0-9][0-9.]*\).*/\1/p' "$src/CMakeLists.txt")
major=${version%%.*}
if [ -z "$version" ]; then
	echo "FAIL: cannot read the project version from $src/CMakeLists.txt"
	exit 1
fi
if [ ! -f "$build/CMakeCache.txt" ]; then
	echo "FAIL: $build is not a configured build directory"
	exit 1
fi
echo "telespool $version: build $build, source $src, temp $tmp"

cc=$(cache CMAKE_C_COMPILER "$build")
[ -n "$cc" ] || cc=cc
sanitize=$(cache TELESPOOL_SANITIZE "$build")
sanflags=()
if [ -n "$sanitize" ]; then
	sanflags=("-fsanitize=$sanitize" -fno-omit-frame-pointer)
	note "sanitizer build ($sanitize): consumers are built with ${sanflags[*]} and $cc"
fi
python=$(cache Python3_EXECUTABLE "$build")
if [ -z "$python" ] || [ ! -x "$python" ]; then python=$(command -v python3 || true); fi

# The public functions, as the header declares them.
api=$(sed -n 's/.*TELESPOOL_EXTERN[^(]*[ *]\(telespool_[a-z_]*\)(.*/\1/p' \
	"$src/lib/include/telespool.h" | sort -u)

# check_library DIR: the libraries in an installed libdir.
check_library() {
	local d=$1 so exported
	so="$d/libtelespool.so.$version"
	check "libtelespool.so.$version is a shared library" test -f "$so"
	check "libtelespool.so.$major -> libtelespool.so.$version" \
		test "$(readlink "$d/libtelespool.so.$major")" = "libtelespool.so.$version"
	check "libtelespool.so -> libtelespool.so.$major" \
		test "$(readlink "$d/libtelespool.so")" = "libtelespool.so.$major"
	check "static libtelespool.a" test -f "$d/libtelespool.a"
	local soname
	soname=$(readelf -d "$so" 2>/dev/null | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
	check "SONAME is libtelespool.so.$major (is: $soname)" test "$soname" = "libtelespool.so.$major"
	if readelf -d "$so" | grep -E '\((RPATH|RUNPATH)\)' >/dev/null; then
		fail "libtelespool.so has an RPATH/RUNPATH: $(readelf -d "$so" | grep -E 'R(UN)?PATH')"
	else
		pass "libtelespool.so has no RPATH/RUNPATH"
	fi
	# nm -D --defined-only: every defined dynamic symbol but the version
	# node (an absolute symbol named TELESPOOL_0).
	exported=$(nm -D --defined-only "$so" | awk '$2 != "A" {print $3}' | sed 's/@.*//' | sort -u)
	local stray
	stray=$(printf '%s\n' "$exported" | grep -v '^telespool_[a-z]' || true)
	internal=$(printf '%s\n' "$exported" | grep '^telespool__' || true)
	if [ -z "$stray" ] && [ -z "$internal" ]; then
		pass "only telespool_* symbols are exported ($(printf '%s\n' "$exported" | wc -l))"
	else
		fail "symbols exported besides the public API: $(echo $stray $internal)"
	fi
	if [ "$exported" = "$api" ]; then
		pass "exported symbols are exactly the header's TELESPOOL_EXTERN functions"
	else
		fail "exported symbols differ from the header's API:"
		diff <(printf '%s\n' "$api") <(printf '%s\n' "$exported") | sed 's/^/    /'
	fi
	if nm -D "$so" | grep "TELESPOOL_$major" >/dev/null; then
		pass "symbols carry the version node TELESPOOL_$major"
	else
		fail "no version node TELESPOOL_$major (linker version script not applied?)"
	fi
}

# check_files ROOT LIBDIR PYDIR: every expected file under an install root.
check_files() {
	local r=$1 libdir=$2 pydir=$3 f missing=()
	for f in bin/telespool-upload include/telespool.h include/telespool_version.h \
		"$libdir/libtelespool.so.$version" "$libdir/libtelespool.so.$major" \
		"$libdir/libtelespool.so" "$libdir/libtelespool.a" \
		"$libdir/pkgconfig/telespool.pc" \
		"$libdir/cmake/telespool/telespoolConfig.cmake" \
		"$libdir/cmake/telespool/telespoolConfigVersion.cmake" \
		"$libdir/cmake/telespool/telespoolTargets.cmake" \
		"$pydir/telespool/__init__.py" "$pydir/telespool/_version.py" \
		share/man/man1/telespool-upload.1 share/man/man3/telespool.3 \
		lib/systemd/system/telespool-upload.service \
		lib/systemd/system/telespool-upload.timer \
		share/doc/telespool/examples/telespool-upload.cron; do
		if [ ! -e "$r/$f" ] && [ ! -e "$r/$f.gz" ]; then missing+=("$f"); fi
	done
	if [ ${#missing[@]} -eq 0 ]; then
		pass "every expected file is installed (under $r)"
	else
		fail "missing from the install: ${missing[*]}"
	fi
	check "telespool-upload is executable" test -x "$r/bin/telespool-upload"
}

# check_man ROOT: both pages render without warnings.
check_man() {
	local r=$1 page err
	if ! have man; then
		note "man not found: man pages not rendered"
		return
	fi
	for page in share/man/man1/telespool-upload.1 share/man/man3/telespool.3; do
		err=$(MANWIDTH=80 LC_ALL=C.UTF-8 man --warnings -l "$r/$page" 2>&1 >/dev/null)
		if [ $? -eq 0 ] && [ -z "$err" ]; then
			pass "man --warnings -l $(basename "$page"): no warnings"
		else
			fail "man --warnings -l $page:"
			printf '%s\n' "$err" | sed 's/^/    /' | head -n 20
		fi
	done
	check "man -M finds telespool-upload(1)" man -M "$r/share/man" -w 1 telespool-upload
	check "man -M finds telespool(3)" man -M "$r/share/man" -w 3 telespool
}

# verify_units MANPATH ARGS...: systemd-analyze verify, which must say nothing.
verify_units() {
	local manpath=$1 out rc
	shift
	out=$(MANPATH=$manpath SYSTEMD_LOG_COLOR=0 systemd-analyze verify --man=yes "$@" 2>&1)
	rc=$?
	if [ $rc -eq 0 ] && [ -z "$out" ]; then
		pass "systemd-analyze verify: telespool-upload.service and .timer are clean"
	else
		fail "systemd-analyze verify (rc $rc):"
		printf '%s\n' "$out" | sed 's/^/    /' | head -n 20
	fi
}

# run_consumer NAME BINARY [ENV...]: runs a consumer program, checks rc 0 and
# that the event is in its spool.
run_consumer() {
	local name=$1 bin=$2 db="$tmp/spool-$1.db" out rc
	shift 2
	out=$(env "$@" "$bin" "$db" "$version" 2>&1)
	rc=$?
	if [ $rc -ne 0 ]; then
		fail "$name: the consumer exited $rc"
		printf '%s\n' "$out" | sed 's/^/    /'
		return
	fi
	if have sqlite3; then
		local n
		n=$(sqlite3 "$db" 'SELECT count(*) FROM events' 2>&1)
		if [ "$n" != 1 ]; then
			fail "$name: the spool holds '$n' events, expected 1"
			return
		fi
	fi
	pass "$name: recorded an event, telespool_version() = $version"
}

# needed_telespool BINARY: whether it loads libtelespool.so.
needed_telespool() { readelf -d "$1" | grep 'NEEDED.*libtelespool' >/dev/null; }

# consumers_pkgconfig LABEL PKG_CONFIG_PATH LIBDIR [EXTRA_RUN_ENV...]
consumers_pkgconfig() {
	local label=$1 pcpath=$2 libdir=$3 cflags libs out
	shift 3
	local runenv=("$@")
	local ver
	ver=$(PKG_CONFIG_PATH=$pcpath pkg-config --modversion telespool 2>&1)
	check "$label: pkg-config --modversion telespool is $version (is: $ver)" test "$ver" = "$version"
	if ! cflags=$(PKG_CONFIG_PATH=$pcpath pkg-config --cflags telespool 2>&1) ||
		! libs=$(PKG_CONFIG_PATH=$pcpath pkg-config --libs telespool 2>&1); then
		fail "$label: pkg-config --cflags --libs telespool: $cflags $libs"
		return
	fi
	# shellcheck disable=SC2086
	if out=$("$cc" "${sanflags[@]}" -std=c11 -Wall -Werror "$src/tests/install/consumer.c" \
		$cflags -o "$tmp/pc-$label" $libs 2>&1); then
		pass "$label: a program builds with pkg-config --cflags --libs telespool"
		# TELESPOOL_OPTIONS_INIT, _QUERY_INIT and _HEARTBEAT_INIT, quiet under
		# -Wextra for C99 and C++ callers alike.
		# shellcheck disable=SC2086
		check "$label: the header compiles warning-free as C99" \
			"$cc" -std=c99 -Wall -Wextra -Wpedantic -Werror -fsyntax-only \
			$cflags "$src/tests/install/consumer.c"
		local std
		for std in c++98 c++11 c++20; do
			# shellcheck disable=SC2086
			check "$label: the header compiles warning-free as $std" \
				c++ -x c++ -std=$std -Wall -Wextra -Wpedantic -Werror \
				-fsyntax-only $cflags "$src/tests/install/consumer.c"
		done
		if needed_telespool "$tmp/pc-$label"; then
			local resolved
			resolved=$(env "${runenv[@]}" ldd "$tmp/pc-$label" | awk '/libtelespool/ {print $3}')
			resolved=$(readlink -f "$resolved")
			case "$resolved" in
			"$(readlink -f "$libdir")"/*) pass "$label: it loads $resolved" ;;
			*) fail "$label: it loads libtelespool from '$resolved', not from $libdir" ;;
			esac
			run_consumer "$label-pkgconfig" "$tmp/pc-$label" "${runenv[@]}"
		else
			fail "$label: the pkg-config consumer does not load libtelespool.so"
		fi
	else
		fail "$label: building against pkg-config --cflags --libs telespool:"
		printf '%s\n' "$out" | sed 's/^/    /' | head -n 20
	fi
	# Static: libtelespool.a (what it links, through --static), the system
	# libraries as they are available.
	libs=$(PKG_CONFIG_PATH=$pcpath pkg-config --static --libs telespool 2>&1)
	libs=$(printf '%s' "$libs" | sed 's/-ltelespool\b/-l:libtelespool.a/')
	# shellcheck disable=SC2086
	if out=$("$cc" "${sanflags[@]}" -std=c11 -Wall -Werror "$src/tests/install/consumer.c" \
		$cflags -o "$tmp/pcs-$label" $libs 2>&1); then
		if needed_telespool "$tmp/pcs-$label"; then
			fail "$label: the static pkg-config consumer still loads libtelespool.so"
		else
			pass "$label: a program links libtelespool.a with pkg-config --static --libs"
			run_consumer "$label-pkgconfig-static" "$tmp/pcs-$label"
		fi
	else
		fail "$label: linking with pkg-config --static --libs telespool ($libs):"
		printf '%s\n' "$out" | sed 's/^/    /' | head -n 20
	fi
}

# public_tests LABEL PKG_CONFIG_PATH LIBDIR [RUN_ENV...]: the public-API
# tests (tests/test_api.c) built against the installed telespool.h and
# libtelespool.so alone (pkg-config; of the source tree only tests/ for
# testutil.h and migrations/ for the schema's history), then run: every
# case passes through the installed header only.
public_tests() {
	local label=$1 pcpath=$2 libdir=$3 cflags libs deps out resolved
	local bin="$tmp/test_api-$1"
	shift 3
	if ! cflags=$(PKG_CONFIG_PATH=$pcpath pkg-config --cflags telespool 2>&1) ||
		! libs=$(PKG_CONFIG_PATH=$pcpath pkg-config --libs telespool 2>&1) ||
		! deps=$(pkg-config --cflags --libs sqlite3 libcjson 2>&1); then
		fail "$label: pkg-config for the public-API tests: $cflags $libs $deps"
		return
	fi
	# shellcheck disable=SC2086
	if ! out=$("$cc" "${sanflags[@]}" -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE \
		-Wall -Wextra -Werror -I"$src/tests" \
		-DTELESPOOL_MIGRATIONS_DIR="\"$src/migrations\"" \
		"$src/tests/test_api.c" "$src/tests/spool_cases.c" "$src/tests/testutil.c" $cflags \
		-o "$bin" $libs $deps -pthread 2>&1); then
		fail "$label: building tests/test_api.c against the installed header:"
		printf '%s\n' "$out" | sed 's/^/    /' | head -n 20
		return
	fi
	resolved=$(env "$@" ldd "$bin" | awk '/libtelespool/ {print $3}')
	resolved=$(readlink -f "$resolved")
	case "$resolved" in
	"$(readlink -f "$libdir")"/*) ;;
	*)
		fail "$label: test_api loads libtelespool from '$resolved', not from $libdir"
		return
		;;
	esac
	if out=$(env "$@" "$bin" 2>&1); then
		pass "$label: tests/test_api.c built against the installed telespool.h and $resolved passes ($(printf '%s\n' "$out" | tail -n 1))"
	else
		fail "$label: tests/test_api.c against the installed tree:"
		printf '%s\n' "$out" | grep -v -e '^-- ' -e '^FAULT: ' | sed 's/^/    /' | tail -n 30
	fi
}

# consumers_cmake LABEL PREFIX_PATH EXPECT_DIR_UNDER [C_COMPILER]
consumers_cmake() {
	local label=$1 prefix_path=$2 under=$3 compiler=${4:-$cc} target kind b out
	for target in telespool::telespool telespool::telespool_static; do
		kind=shared
		[ "$target" = telespool::telespool_static ] && kind=static
		b="$tmp/cmake-$label-$kind"
		local args=(-S "$src/tests/install/consumer-cmake" -B "$b"
			-DCMAKE_C_COMPILER="$compiler" -DTELESPOOL_TARGET="$target"
			-DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF
			-DCMAKE_FIND_USE_SYSTEM_PACKAGE_REGISTRY=OFF)
		[ -n "$prefix_path" ] && args+=(-DCMAKE_PREFIX_PATH="$prefix_path")
		if [ ${#sanflags[@]} -gt 0 ] && [ "$compiler" = "$cc" ]; then
			args+=(-DCMAKE_C_FLAGS="${sanflags[*]}" -DCMAKE_EXE_LINKER_FLAGS="${sanflags[*]}")
		fi
		if ! out=$(cmake "${args[@]}" 2>&1); then
			fail "$label: find_package(telespool) for $target:"
			printf '%s\n' "$out" | sed 's/^/    /' | tail -n 20
			continue
		fi
		local found
		found=$(cache telespool_DIR "$b")
		case "$found" in
		"$under"/*) ;;
		*)
			fail "$label: find_package found telespool in '$found', not under $under"
			continue
			;;
		esac
		if ! out=$(cmake --build "$b" 2>&1); then
			fail "$label: building against $target:"
			printf '%s\n' "$out" | sed 's/^/    /' | tail -n 20
			continue
		fi
		pass "$label: find_package(telespool) + $target builds (package in $found)"
		if [ $kind = static ] && needed_telespool "$b/consumer"; then
			fail "$label: the $target consumer loads libtelespool.so"
			continue
		fi
		if [ $kind = shared ] && ! needed_telespool "$b/consumer"; then
			fail "$label: the $target consumer does not load libtelespool.so"
			continue
		fi
		# No LD_LIBRARY_PATH: CMake's build RPATH points at the package.
		run_consumer "$label-cmake-$kind" "$b/consumer"
	done
}

# check_python LABEL PYTHON EXPECT_LIB_UNDER [ENV...]: the binding imports,
# loads the library from under EXPECT_LIB_UNDER and records an event.
check_python() {
	local label=$1 py=$2 under=$3 out
	shift 3
	out=$(cd "$tmp" && env -u TELESPOOL_LIBRARY -u TELESPOOL_BUILD_DIR "$@" "$py" - "$tmp/spool-$label-py.db" <<'PY' 2>&1
import os, sys
import telespool
maps = open("/proc/self/maps").read().split("\n")
paths = sorted({l.split()[-1] for l in maps if "libtelespool" in l})
print(telespool.library_version())
print(os.path.realpath(paths[0]) if paths else "(none)")
with telespool.Spool(sys.argv[1], instance_id="instance_install_test", version="v0") as sp:
    sp.record_query(query_id="q", adapter="A", runner="r", model_name="m",
                    duration_ms=1, pipeline_plugins=["p"], error=None)
print(telespool.__file__)
print(telespool.__version__)
PY
	)
	local rc=$?
	if [ $rc -ne 0 ]; then
		fail "$label: import telespool with $py:"
		printf '%s\n' "$out" | sed 's/^/    /' | tail -n 20
		return
	fi
	local v lib mod pyv
	v=$(printf '%s\n' "$out" | sed -n 1p)
	lib=$(printf '%s\n' "$out" | sed -n 2p)
	mod=$(printf '%s\n' "$out" | sed -n 3p)
	pyv=$(printf '%s\n' "$out" | sed -n 4p)
	if [ "$v" != "$version" ]; then
		fail "$label: telespool.library_version() is '$v', expected $version"
	elif [ "$pyv" != "$version" ]; then
		fail "$label: telespool.__version__ is '$pyv', expected $version"
	elif [[ "$lib" != "$(readlink -f "$under")"/* ]]; then
		fail "$label: the binding loaded '$lib', not a library under $under"
	else
		pass "$label: the Python binding ($mod) loads $lib, library_version() = $v, records"
	fi
}

# ---------------------------------------------------------------------------
echo "== 1. cmake --install into a temporary prefix, then moved elsewhere"
stage="$tmp/staged-prefix"
libdir=$(cache CMAKE_INSTALL_LIBDIR "$build")
[ -n "$libdir" ] || libdir=lib
pydir=$(cache TELESPOOL_PYTHON_DIR "$build")
[ -n "$pydir" ] || pydir=lib/python3/dist-packages
if out=$(cmake --install "$build" --prefix "$stage" 2>&1); then
	pass "cmake --install $build --prefix $stage"
	installed=1
else
	fail "cmake --install:"
	printf '%s\n' "$out" | sed 's/^/    /' | tail -n 20
	installed=0
fi

if [ $installed = 1 ]; then
	check_files "$stage" "$libdir" "$pydir"
	check_library "$stage/$libdir"
	check_man "$stage"
	exec_start=$(sed -n 's/^ExecStart=\([^ ]*\).*/\1/p' "$stage/lib/systemd/system/telespool-upload.service")
	check "the unit's ExecStart is the installed program ($exec_start)" \
		test "$exec_start" = "$stage/bin/telespool-upload"
	if have systemd-analyze; then
		verify_units "$stage/share/man" "$stage/lib/systemd/system/telespool-upload.service" \
			"$stage/lib/systemd/system/telespool-upload.timer"
	else
		note "systemd-analyze not found: units not verified"
	fi

	# Move the tree: everything but the unit (ExecStart is absolute by
	# nature) must keep working from its new place.
	moved="$tmp/relocated/elsewhere/prefix"
	mkdir -p "$(dirname "$moved")"
	mv "$stage" "$moved"
	leaks=$(grep -rlIF -- "$stage" "$moved" | grep -v '\.service$' || true)
	if [ -z "$leaks" ]; then
		pass "no installed text file names the install prefix (relocatable)"
	else
		fail "installed files name the original prefix $stage: ${leaks//$moved\//}"
	fi
	out=$("$moved/bin/telespool-upload" --version 2>&1)
	if [[ "$out" == *"$version"* ]]; then
		pass "the moved telespool-upload --version runs: $out"
	else
		fail "the moved telespool-upload --version: $out"
	fi
	if have pkg-config; then
		consumers_pkgconfig moved "$moved/$libdir/pkgconfig" "$moved/$libdir" \
			LD_LIBRARY_PATH="$moved/$libdir"
	else
		fail "pkg-config not found"
	fi
	consumers_cmake moved "$moved" "$moved"
	if have pkg-config; then
		public_tests moved "$moved/$libdir/pkgconfig" "$moved/$libdir" \
			LD_LIBRARY_PATH="$moved/$libdir"
	fi
	if [ -n "$sanitize" ]; then
		note "sanitizer build: the Python binding is not loaded (its library needs the sanitizer runtime preloaded)"
	elif [ -z "$python" ]; then
		note "no python3: the Python binding is not checked"
	else
		check_python moved "$python" "$moved" PYTHONPATH="$moved/$pydir" \
			LD_LIBRARY_PATH="$moved/$libdir"
	fi
fi

# ---------------------------------------------------------------------------
echo "== 2. cpack -G DEB from a build configured with -DCMAKE_INSTALL_PREFIX=/usr"
debbuild="$tmp/deb-build"
deb=
if ! out=$(env -u CFLAGS -u LDFLAGS cmake -S "$src" -B "$debbuild" -DCMAKE_INSTALL_PREFIX=/usr \
	-DTELESPOOL_BUILD_TESTS=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo 2>&1); then
	fail "configuring the /usr build:"
	printf '%s\n' "$out" | sed 's/^/    /' | tail -n 20
elif ! out=$(cmake --build "$debbuild" -j"$jobs" 2>&1); then
	fail "building the /usr build:"
	printf '%s\n' "$out" | sed 's/^/    /' | tail -n 30
elif ! out=$(cd "$debbuild" && cpack -G DEB 2>&1); then
	fail "cpack -G DEB:"
	printf '%s\n' "$out" | sed 's/^/    /' | tail -n 20
else
	deb=$(ls "$debbuild"/telespool_*.deb 2>/dev/null | head -n 1)
	if [ -n "$deb" ]; then
		pass "cpack -G DEB built $(basename "$deb") ($(du -k "$deb" | cut -f1) KiB)"
	else
		fail "cpack -G DEB made no telespool_*.deb"
	fi
fi

if [ -n "$deb" ]; then
	arch=$(dpkg --print-architecture)
	deblibdir=$(cache CMAKE_INSTALL_LIBDIR "$debbuild")
	if have dpkg-architecture; then
		ma=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null)
		check "the .deb's libdir is Debian's multiarch lib/$ma (is: $deblibdir)" \
			test "$deblibdir" = "lib/$ma"
	fi
	check "the .deb is named telespool_${version}_$arch.deb" \
		test "$(basename "$deb")" = "telespool_${version}_$arch.deb"
	echo "--- dpkg-deb -c $(basename "$deb")"
	listing=$(dpkg-deb -c "$deb")
	printf '%s\n' "$listing" | awk '{print "    " $1 " " $6 ($7 ? " " $7 " " $8 : "")}'
	paths=$(printf '%s\n' "$listing" | awk '{print $6}' | sed 's|^\./|/|; s|/$||')
	missing=()
	for f in /usr/bin/telespool-upload /usr/include/telespool.h /usr/include/telespool_version.h \
		"/usr/$deblibdir/libtelespool.so.$version" "/usr/$deblibdir/libtelespool.so.$major" \
		"/usr/$deblibdir/libtelespool.so" "/usr/$deblibdir/libtelespool.a" \
		"/usr/$deblibdir/pkgconfig/telespool.pc" \
		"/usr/$deblibdir/cmake/telespool/telespoolConfig.cmake" \
		"/usr/$deblibdir/cmake/telespool/telespoolConfigVersion.cmake" \
		"/usr/$deblibdir/cmake/telespool/telespoolTargets.cmake" \
		/usr/lib/python3/dist-packages/telespool/__init__.py \
		/usr/share/man/man1/telespool-upload.1 /usr/share/man/man3/telespool.3 \
		/usr/lib/systemd/system/telespool-upload.service \
		/usr/lib/systemd/system/telespool-upload.timer \
		/usr/share/doc/telespool/examples/telespool-upload.cron; do
		grep -qxF -e "$f" -e "$f.gz" <<<"$paths" || missing+=("$f")
	done
	if [ ${#missing[@]} -eq 0 ]; then
		pass "the .deb contains every expected file"
	else
		fail "missing from the .deb: ${missing[*]}"
	fi
	outside=$(grep -v -e '^/usr$' -e '^/usr/' <<<"$paths" | grep -v '^$' || true)
	outside+=$(grep -e '^/usr/local' <<<"$paths" || true)
	check "the .deb installs only under /usr (not /usr/local)" test -z "$outside"
	check "no __pycache__ or .pyc in the .deb" bash -c "! grep -q -e __pycache__ -e '\.pyc\$' <<<\"\$1\"" _ "$paths"

	pkg=$(dpkg-deb -f "$deb" Package)
	ver=$(dpkg-deb -f "$deb" Version)
	debarch=$(dpkg-deb -f "$deb" Architecture)
	depends=$(dpkg-deb -f "$deb" Depends)
	echo "--- dpkg-deb -f Package Version Architecture Depends"
	echo "    $pkg $ver $debarch"
	echo "    Depends: $depends"
	check "Package: telespool, Version: $version, Architecture: $arch" \
		test "$pkg/$ver/$debarch" = "telespool/$version/$arch"

	root="$tmp/deb-root"
	mkdir -p "$root"
	dpkg-deb -x "$deb" "$root"
	dpkg-deb -e "$deb" "$root/DEBIAN"
	check "control: shlibs names libtelespool $major" \
		grep -qx "libtelespool $major telespool (>= $version)" "$root/DEBIAN/shlibs"
	check "control: triggers ldconfig (the loader cache is refreshed on install/removal)" \
		grep -qx 'activate-noawait ldconfig' "$root/DEBIAN/triggers"
	check "control: postinst and prerm are executable shell scripts" \
		bash -c 'for f in "$1"/postinst "$1"/prerm; do [ -x "$f" ] && sh -n "$f" || exit 1; done' _ "$root/DEBIAN"
	check "control: prerm removes the binding's __pycache__" \
		grep -q "/usr/lib/python3/dist-packages/telespool/__pycache__" "$root/DEBIAN/prerm"

	# Every library the packaged ELF files load directly (NEEDED) must come
	# from a package named in Depends (resolved here with ldd and dpkg -S).
	deps_ok=1
	owners=()
	for elf in "$root/usr/bin/telespool-upload" "$root/usr/$deblibdir/libtelespool.so.$version"; do
		while read -r lib path; do
			[ -n "$path" ] || continue
			case "$lib" in libtelespool.so*) continue ;; esac
			if [ "$path" = "not" ]; then
				fail "$(basename "$elf") needs $lib, which is not installed here"
				deps_ok=0
				continue
			fi
			owner=
			for p in "$path" "${path#/usr}" "/usr$path" "$(readlink -f "$path")"; do
				owner=$(dpkg -S "$p" 2>/dev/null | sed -n '1s/:.*//p')
				[ -n "$owner" ] && break
			done
			if [ -z "$owner" ]; then
				fail "$(basename "$elf") needs $lib ($path), which no package owns"
				deps_ok=0
			elif ! grep -Eq "(^|, )$owner( |,|$)" <<<"$depends"; then
				fail "$(basename "$elf") needs $lib from $owner, which Depends does not name"
				deps_ok=0
			else
				owners+=("$owner")
			fi
		done < <(ldd "$elf" 2>/dev/null | awk -v needed=" $(readelf -d "$elf" |
			sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')" '
			{ name = $1; sub(/.*\//, "", name) }
			index(needed, " " name " ") == 0 { next }
			$2 == "=>" { print $1, $3; next }
			$1 ~ /^\// { print name, $1 }')
	done
	[ $deps_ok = 1 ] && pass "Depends names the package of every library the programs load ($(printf '%s\n' "${owners[@]}" | sort -u | tr '\n' ' '))"

	if have systemd-analyze; then
		# A root holding the system's units (so that sysinit.target etc.
		# resolve) and the package's files.
		sysunits=
		for d in /usr/lib/systemd/system /lib/systemd/system; do
			[ -f "$d/sysinit.target" ] && sysunits=$d && break
		done
		if [ -n "$sysunits" ]; then
			vroot="$tmp/verify-root"
			mkdir -p "$vroot/usr/lib/systemd" "$vroot/etc/systemd/system"
			cp -a "$sysunits" "$vroot/usr/lib/systemd/system"
			cp -a "$root/usr/bin" "$vroot/usr/"
			cp "$root"/usr/lib/systemd/system/telespool-upload.* "$vroot/usr/lib/systemd/system/"
			verify_units "$root/usr/share/man" --root="$vroot" \
				telespool-upload.service telespool-upload.timer
		else
			note "no system units to verify against: the .deb's units not verified"
		fi
	else
		note "systemd-analyze not found: the .deb's units not verified"
	fi
	check "the .deb's unit runs /usr/bin/telespool-upload" \
		grep -q '^ExecStart=/usr/bin/telespool-upload ' "$root/usr/lib/systemd/system/telespool-upload.service"
	if have pkg-config; then
		# The package's telespool.pc is relocatable too: a consumer against
		# the extracted tree.
		save=("${sanflags[@]}")
		sanflags=()
		cc_save=$cc
		cc=$(cache CMAKE_C_COMPILER "$debbuild")
		consumers_pkgconfig deb-extracted "$root/usr/$deblibdir/pkgconfig" "$root/usr/$deblibdir" \
			LD_LIBRARY_PATH="$root/usr/$deblibdir"
		sanflags=("${save[@]}")
		cc=$cc_save
	fi
fi

# ---------------------------------------------------------------------------
echo "== 3. dpkg -i / dpkg -r"
if [ -z "$deb" ]; then
	note "no .deb: dpkg -i not tried"
elif [ "$(id -u)" != 0 ] || { [ "${CI:-}" != true ] && [ "${TELESPOOL_DPKG_TEST:-}" != 1 ]; }; then
	note "dpkg -i/-r not run: it changes the machine, so it runs only as root with CI=true or TELESPOOL_DPKG_TEST=1"
elif dpkg-query -W -f='${Status}' telespool 2>/dev/null | grep 'install ok installed' >/dev/null; then
	note "a telespool package is already installed here: not replaced, dpkg -i not tried"
else
	if out=$(dpkg -i "$deb" 2>&1); then
		dpkg_installed_by_us=1
		pass "dpkg -i $(basename "$deb")"
	else
		dpkg_installed_by_us=1
		fail "dpkg -i:"
		printf '%s\n' "$out" | sed 's/^/    /' | tail -n 20
	fi
	if [ $dpkg_installed_by_us = 1 ] && dpkg-query -W -f='${Status}' telespool 2>/dev/null | grep 'install ok installed' >/dev/null; then
		sys_libdir="/usr/$deblibdir"
		check "ldconfig's cache has libtelespool.so.$major" \
			bash -c "ldconfig -p | grep -q 'libtelespool.so.$major '"
		out=$(env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin telespool-upload --version 2>&1)
		check "telespool-upload --version from PATH: $out" bash -c "[[ \"\$1\" == *$version* ]]" _ "$out"
		if [ -x /usr/bin/python3 ]; then
			check_python system /usr/bin/python3 "$sys_libdir" -i PATH=/usr/sbin:/usr/bin:/sbin:/bin
		else
			note "no /usr/bin/python3: the binding is not checked through Debian's python3"
		fi
		save=("${sanflags[@]}")
		sanflags=()
		cc_save=$cc
		cc=$(cache CMAKE_C_COMPILER "$debbuild")
		if have pkg-config; then
			consumers_pkgconfig system "" "$sys_libdir"
		fi
		consumers_cmake system "" "/usr/$deblibdir/cmake" "$cc"
		sanflags=("${save[@]}")
		cc=$cc_save
		if have systemd-analyze; then
			verify_units /usr/share/man /usr/lib/systemd/system/telespool-upload.service \
				/usr/lib/systemd/system/telespool-upload.timer
		fi
		if have man; then
			check "man finds the installed telespool-upload(1)" man -w 1 telespool-upload
			check "man finds the installed telespool(3)" man -w 3 telespool
		fi
	fi
	if out=$(dpkg -r telespool 2>&1); then
		dpkg_installed_by_us=0
		pass "dpkg -r telespool"
	else
		fail "dpkg -r telespool:"
		printf '%s\n' "$out" | sed 's/^/    /' | tail -n 20
	fi
	left=$(ls -d /usr/bin/telespool-upload "/usr/$deblibdir"/libtelespool* \
		"/usr/$deblibdir/cmake/telespool" /usr/include/telespool.h /usr/include/telespool_version.h \
		/usr/lib/python3/dist-packages/telespool /usr/lib/systemd/system/telespool-upload.* 2>/dev/null)
	check "dpkg -r left nothing behind${left:+ (left: $(echo $left))}" test -z "$left"
	check "the loader cache no longer has libtelespool" bash -c "! ldconfig -p | grep -q libtelespool"
fi

echo "== $((failures)) failure(s), $(($(date +%s) - started)) s"
if [ $failures -ne 0 ]; then
	echo "FAIL: install_package"
	exit 1
fi
echo "PASS: install_package"
exit 0
