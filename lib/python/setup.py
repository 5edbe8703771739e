"""Builds the telespool wheel: CMake on the repository, then its binaries into the package.

    python3 -m pip wheel --no-deps --no-build-isolation lib/python -w dist

(offline, with the build tools of the machine: setuptools, wheel, cmake, a C compiler,
binutils' readelf, and the -dev packages of README's "Dependencies", including Debian's static
libsqlite3.a and libyaml.a).  The metadata is in pyproject.toml; this file adds the version
(CMakeLists.txt's ``project(telespool VERSION x.y.z)``, the one place it is set) and the build.

What the wheel holds, under telespool/:
  _lib/libtelespool.so.0   the library, SQLite linked in statically, run path $ORIGIN
  _lib/libcjson.so.1       every shared library the binaries need that is not part of glibc,
                           copied from the build machine (Debian ships no static cJSON)
  _bin/telespool-upload    the uploader, SQLite and libyaml linked in, run path $ORIGIN/../_lib
  _licenses/<package>      the copyright and licence notices of what is linked in or carried
                           (Debian's /usr/share/doc/<package>/copyright, found with dpkg -S)
  _version.py              the version, written in
libcurl is not inside: telespool-upload loads it (dlopen) only when there is something to send,
so the host needs libcurl4 (``apt-get install libcurl4`` on python:3.12-slim) to send, and
nothing to record.

The platform tag is computed, not assumed: ``manylinux_2_N_<arch>`` where 2.N is the newest
GLIBC symbol version any ELF file of the wheel needs (readelf -V), when every library they
load is glibc's or inside the wheel; ``linux_<arch>`` otherwise.  The Python tag is ``py3-none``:
the binding is ctypes, no extension module, so any CPython 3 can load it.

Environment:
  TELESPOOL_CMAKE_ARGS       extra arguments for the CMake configure step (shell words)
  CMAKE_BUILD_PARALLEL_LEVEL jobs for the build (CMake's own variable)
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py as _build_py
from setuptools.dist import Distribution

try:    # setuptools >= 70.1 has its own
    from setuptools.command.bdist_wheel import bdist_wheel as _bdist_wheel
except ImportError:
    try:
        from wheel.bdist_wheel import bdist_wheel as _bdist_wheel
    except ImportError:
        raise SystemExit(f"telespool: this Python ({sys.executable}) has setuptools "
                         "older than 70.1 without the 'wheel' package, which builds wheels "
                         "with it: use Debian's /usr/bin/python3 with python3-wheel, or "
                         "install 'wheel' into this Python") from None

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent          # lib/python -> the repository

# Libraries of glibc (and the compiler runtime) the target system always has.  Anything else a
# binary needs goes into the wheel.
SYSTEM_LIBS = re.compile(r"^(libc\.so\.6|libm\.so\.6|libdl\.so\.2|libpthread\.so\.0|librt\.so\.1|"
                         r"libutil\.so\.1|libresolv\.so\.2|libgcc_s\.so\.1|ld-linux[-a-z0-9_.]*)$")

_platform_tag: str | None = None


def read_version() -> str:
    cmakelists = ROOT / "CMakeLists.txt"
    try:
        text = cmakelists.read_text(encoding="utf-8")
    except OSError as e:
        raise SystemExit(f"telespool: {cmakelists}: {e.strerror}; the wheel is built from a "
                         "checkout of the repository (lib/python inside it)") from None
    m = re.search(r"^project\(telespool\s+VERSION\s+([0-9][0-9.]*)", text, re.M)
    if not m:
        raise SystemExit(f"telespool: no project(telespool VERSION ...) in {cmakelists}")
    return m.group(1)


def _run(argv: list[str], **kw) -> str:
    print("telespool:", " ".join(shlex.quote(a) for a in argv), flush=True)
    return subprocess.run(argv, check=True, text=True, **kw).stdout


def _readelf(*args: str) -> str:
    return subprocess.run(["readelf", "-W", *args], check=True, text=True,
                          capture_output=True, env={**os.environ, "LC_ALL": "C"}).stdout


def _needed(path: Path) -> list[str]:
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", _readelf("-d", str(path)))


def _resolve(path: Path) -> dict[str, str]:
    """soname -> path, as the loader of this machine finds them (ldd)."""
    out = subprocess.run(["ldd", str(path)], check=True, text=True, capture_output=True,
                         env={**os.environ, "LC_ALL": "C"}).stdout
    return {m.group(1): m.group(2) for m in re.finditer(r"^\s*(\S+) => (/\S+)", out, re.M)}


def _glibc_needed(path: Path) -> tuple[int, int]:
    versions = re.findall(r"Name: GLIBC_(\d+)\.(\d+)", _readelf("-V", str(path)))
    return max(((int(a), int(b)) for a, b in versions), default=(2, 17))


def _cache_value(build: Path, name: str) -> str | None:
    try:
        text = (build / "CMakeCache.txt").read_text(encoding="utf-8")
    except OSError:
        return None
    m = re.search(rf"^{re.escape(name)}:[A-Z]+=(.*)$", text, re.M)
    return m.group(1) if m else None


def _licenses(pkg: Path, files: list[str]) -> None:
    """Copies the Debian copyright file of the package each file comes from into
    _licenses/ (MIT-style licences ask that their notice travel with the binaries)."""
    dest = pkg / "_licenses"
    shutil.rmtree(dest, ignore_errors=True)
    if shutil.which("dpkg") is None:
        print("telespool: no dpkg; the wheel carries no licence notices of its "
              "dependencies", flush=True)
        return
    dest.mkdir()
    for f in files:
        p = subprocess.run(["dpkg", "-S", f], capture_output=True, text=True)
        if p.returncode != 0:
            print(f"telespool: {f} belongs to no Debian package; no notice copied", flush=True)
            continue
        name = p.stdout.split(":", 1)[0].strip()
        notice = Path("/usr/share/doc") / name / "copyright"
        if notice.is_file():
            shutil.copyfile(notice, dest / name)


def _bundle(pkg: Path, build: Path) -> None:
    """Copies the binaries into the package, with the libraries they need, and computes the
    platform tag."""
    global _platform_tag
    libdir, bindir = pkg / "_lib", pkg / "_bin"
    for d in (libdir, bindir):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    lib = libdir / "libtelespool.so.0"
    shutil.copy2((build / "lib" / "libtelespool.so.0").resolve(), lib)
    prog = bindir / "telespool-upload"
    shutil.copy2(build / "uploader" / "telespool-upload", prog)

    origins = [v for v in (_cache_value(build, "TELESPOOL_SQLITE3_STATIC"),
                           _cache_value(build, "TELESPOOL_YAML_STATIC")) if v]
    todo, seen, manylinux = [lib, prog], set(), True
    glibc = (2, 17)
    while todo:
        elf = todo.pop()
        glibc = max(glibc, _glibc_needed(elf))
        found = None
        for soname in _needed(elf):
            if SYSTEM_LIBS.match(soname) or soname in seen or soname == lib.name:
                continue
            if found is None:
                found = _resolve(elf)
            if soname not in found:
                raise SystemExit(f"telespool: {elf.name} needs {soname}, which is not found")
            seen.add(soname)
            copy = libdir / soname
            shutil.copy2(os.path.realpath(found[soname]), copy)
            origins.append(os.path.realpath(found[soname]))
            print(f"telespool: bundling {found[soname]} as _lib/{soname}", flush=True)
            # A bundled library that itself needs a bundled one would need a run path.
            if any(not SYSTEM_LIBS.match(n) for n in _needed(copy)):
                manylinux = False
            todo.append(copy)
    _licenses(pkg, origins)
    arch = os.uname().machine
    _platform_tag = f"manylinux_{glibc[0]}_{glibc[1]}_{arch}" if manylinux else f"linux_{arch}"
    print(f"telespool: newest glibc symbol version needed: {glibc[0]}.{glibc[1]}; "
          f"platform tag {_platform_tag}", flush=True)


class build_py(_build_py):
    """The Python files, then CMake's library and program into the package."""

    def run(self) -> None:
        # A module deleted from the package since the last build must not ship from build/.
        shutil.rmtree(Path(self.build_lib) / "telespool", ignore_errors=True)
        super().run()
        build_temp = Path(self.get_finalized_command("build").build_temp).resolve()
        cmake_dir = build_temp / "cmake"
        home = _cache_value(cmake_dir, "CMAKE_HOME_DIRECTORY")
        if home is not None and Path(home).resolve() != ROOT:
            # The checkout was moved or copied with its build tree; CMake refuses a cache made
            # for another source directory.
            print(f"telespool: {cmake_dir} was configured for {home}; starting it afresh",
                  flush=True)
            shutil.rmtree(cmake_dir)
        cmake = shutil.which("cmake")
        if cmake is None:
            raise SystemExit("telespool: cmake is needed to build the wheel")
        _run([cmake, "-S", str(ROOT), "-B", str(cmake_dir), "-DCMAKE_BUILD_TYPE=Release",
              "-DTELESPOOL_WHEEL=ON", "-DTELESPOOL_BUILD_TESTS=OFF",
              *shlex.split(os.environ.get("TELESPOOL_CMAKE_ARGS", ""))])
        _run([cmake, "--build", str(cmake_dir), "--target", "telespool", "telespool-upload"])
        pkg = Path(self.build_lib) / "telespool"
        _bundle(pkg, cmake_dir)
        (pkg / "_version.py").write_text(
            '"""The binding\'s version, written by the build from CMakeLists.txt\'s '
            'project(VERSION)."""\n\n'
            f'__version__ = "{read_version()}"\n', encoding="utf-8")


class bdist_wheel(_bdist_wheel):
    """A platform wheel for any Python 3 (py3-none-<platform>)."""

    def finalize_options(self) -> None:
        super().finalize_options()
        self.root_is_pure = False

    def get_tag(self) -> tuple[str, str, str]:
        if _platform_tag is None:
            raise SystemExit("telespool: the platform tag is computed by build_py, which did "
                             "not run")
        return "py3", "none", _platform_tag


class BinaryDistribution(Distribution):
    def has_ext_modules(self) -> bool:
        return True


if sys.platform != "linux":
    raise SystemExit("telespool: the wheel is built on Linux only")

setup(version=read_version(), distclass=BinaryDistribution,
      cmdclass={"build_py": build_py, "bdist_wheel": bdist_wheel})
