"""The wheel, as a LangBot user gets it: built offline from a clean copy of the checkout with
Debian's tools, installed with --no-index into a fresh virtual environment, and used from a
directory outside the checkout with TELESPOOL_LIBRARY, PYTHONPATH and LD_LIBRARY_PATH unset:
events recorded through ``import telespool``, sent by the venv's ``telespool-upload`` and by
``telespool.upload.upload_once()`` to the fake Space.  Also checks what is inside: the binaries'
NEEDED libraries and run paths, and that the platform tag matches the newest GLIBC symbol
version they need.

Environment: TELESPOOL_WHEEL_PYTHON, the Python that builds the wheel and makes the venv
(default: the first of /usr/bin/python3 and this one that has setuptools, wheel and venv).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS_DIR = os.path.dirname(HERE)
ROOT = os.path.dirname(TESTS_DIR)
sys.path.insert(0, TESTS_DIR)

from fake_space import FakeSpace  # noqa: E402

GLIBC_LIBS = re.compile(r"^(libc\.so\.6|libm\.so\.6|libdl\.so\.2|libpthread\.so\.0|librt\.so\.1|"
                        r"ld-linux[-a-z0-9_.]*)$")
STEERING = ("TELESPOOL_LIBRARY", "TELESPOOL_BUILD_DIR", "TELESPOOL_UPLOAD", "TELESPOOL_LIBCURL",
            "PYTHONPATH", "LD_LIBRARY_PATH", "LD_PRELOAD", "PYTHONHOME", "VIRTUAL_ENV",
            "SPACE__URL", "SPACE__DISABLE_TELEMETRY", "SYSTEM__INSTANCE_ID",
            "LANGBOT_TELEMETRY_INGEST_TOKEN", "INVOCATION_ID")
INSTANCE_ID = "instance_00000000-0000-4000-8000-00000000a4ee"


def cmake_version() -> str:
    with open(os.path.join(ROOT, "CMakeLists.txt"), encoding="utf-8") as f:
        return re.search(r"^project\(telespool\s+VERSION\s+([0-9.]+)", f.read(), re.M).group(1)


def builder_python() -> str | None:
    env = os.environ.get("TELESPOOL_WHEEL_PYTHON")
    if env:
        return env
    for py in ("/usr/bin/python3", sys.executable):
        if py and os.access(py, os.X_OK) and subprocess.run(
                [py, "-c", "import setuptools, wheel, venv, ensurepip"],
                capture_output=True).returncode == 0:
            return py
    return None


def clean_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in STEERING and not k.lower().endswith("_proxy")}
    env.update(extra)
    return env


def readelf(*args: str) -> str:
    return subprocess.run(["readelf", "-W", *args], check=True, capture_output=True, text=True,
                          env=clean_env(LC_ALL="C")).stdout


def copy_checkout(dest: str) -> None:
    """The checkout's files (tracked, and new ones not ignored), without build trees."""
    try:
        out = subprocess.run(["git", "-C", ROOT, "ls-files", "-z", "--cached", "--others",
                              "--exclude-standard"], check=True, capture_output=True).stdout
        files = [f for f in out.decode().split("\0") if f]
    except (OSError, subprocess.CalledProcessError):
        files = None
    if not files:
        shutil.copytree(ROOT, dest, dirs_exist_ok=True, symlinks=True,
                        ignore=shutil.ignore_patterns(".git", "build", "build-*", "__pycache__",
                                                      "*.egg-info"))
        return
    for f in files:
        src = os.path.join(ROOT, f)
        if not os.path.lexists(src):
            continue        # deleted in the work tree, not yet in the index
        os.makedirs(os.path.dirname(os.path.join(dest, f)), exist_ok=True)
        shutil.copy2(src, os.path.join(dest, f), follow_symlinks=False)


RECORD = r"""
import json, sys
import telespool
n, prefix = int(sys.argv[1]), sys.argv[2]
with telespool.Spool("data/telemetry.db", instance_id=sys.argv[3], version="v4.10.8") as sp:
    for i in range(n):
        sp.record_query(query_id=f"{prefix}-{i}", adapter="TelegramAdapter", runner="local-agent",
                        model_name="gpt-4o", duration_ms=10 + i, pipeline_plugins=["hello"],
                        error=None)
print(json.dumps({"library": telespool.LIBRARY_PATH, "module": telespool.__file__,
                  "version": telespool.__version__, "library_version": telespool.library_version()}))
"""

UPLOAD_ONCE = r"""
import asyncio, dataclasses, json
from telespool import upload
r = asyncio.run(upload.upload_once(data_dir="data", max_seconds=60))
d = dataclasses.asdict(r)
d.pop("status")
print(json.dumps(d))
"""


class TestWheel(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.py = builder_python()
        if cls.py is None:
            raise AssertionError("no Python with setuptools, wheel and venv to build the wheel "
                                 "(Debian: apt-get install python3-setuptools python3-wheel "
                                 "python3-venv python3-pip; or set TELESPOOL_WHEEL_PYTHON)")
        cls.tmp = tempfile.mkdtemp(prefix="telespool-wheel-")
        cls.version = cmake_version()
        src = os.path.join(cls.tmp, "checkout")
        copy_checkout(src)
        dist = os.path.join(cls.tmp, "dist")
        env = clean_env(CMAKE_BUILD_PARALLEL_LEVEL=os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL",
                                                                  "2"),
                        PIP_NO_INDEX="1")
        p = subprocess.run([cls.py, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                            os.path.join(src, "lib", "python"), "-w", dist],
                           cwd=cls.tmp, env=env, capture_output=True, text=True, timeout=600)
        if p.returncode != 0:
            raise AssertionError(f"pip wheel failed:\n{p.stdout}\n{p.stderr}")
        cls.checkout, cls.dist, cls.build_env = src, dist, env
        wheels = [f for f in os.listdir(dist) if f.endswith(".whl")]
        if len(wheels) != 1:
            raise AssertionError(f"expected one wheel, got {wheels}")
        cls.wheel = os.path.join(dist, wheels[0])
        cls.venv = os.path.join(cls.tmp, "venv")
        subprocess.run([cls.py, "-m", "venv", cls.venv], check=True, env=env, timeout=300)
        p = subprocess.run([os.path.join(cls.venv, "bin", "python"), "-m", "pip", "install",
                            "--no-index", cls.wheel], env=env, capture_output=True, text=True,
                           timeout=300)
        if p.returncode != 0:
            raise AssertionError(f"pip install failed:\n{p.stdout}\n{p.stderr}")
        site = subprocess.run([os.path.join(cls.venv, "bin", "python"), "-c",
                               "import sysconfig; print(sysconfig.get_paths()['platlib'])"],
                              env=clean_env(), capture_output=True, text=True, check=True)
        cls.pkg = os.path.join(site.stdout.strip(), "telespool")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(getattr(cls, "tmp", ""), ignore_errors=True)

    def elves(self) -> list[str]:
        return [os.path.join(self.pkg, "_lib", f) for f in sorted(os.listdir(
            os.path.join(self.pkg, "_lib")))] + [os.path.join(self.pkg, "_bin",
                                                              "telespool-upload")]

    def test_name_metadata_and_contents(self):
        name = os.path.basename(self.wheel)
        m = re.fullmatch(r"telespool-([^-]+)-py3-none-([a-z0-9_]+)\.whl", name)
        self.assertIsNotNone(m, name)
        self.assertEqual(m.group(1), self.version)
        with zipfile.ZipFile(self.wheel) as z:
            names = set(z.namelist())
            for f in ("telespool/__init__.py", "telespool/upload.py", "telespool/_version.py",
                      "telespool/_lib/libtelespool.so.0", "telespool/_bin/telespool-upload"):
                self.assertIn(f, names)
            # Every module and data file of the package in the checkout is in the wheel.
            pkg_src = os.path.join(ROOT, "lib", "python", "telespool")
            for f in os.listdir(pkg_src):
                if f.endswith(".py") or f == "py.typed":
                    self.assertIn(f"telespool/{f}", names)
            info = f"telespool-{self.version}.dist-info"
            meta = z.read(f"{info}/METADATA").decode()
            self.assertIn(f"\nVersion: {self.version}\n", meta)
            wheel_file = z.read(f"{info}/WHEEL").decode()
            self.assertIn("Root-Is-Purelib: false", wheel_file)
            self.assertIn(f"Tag: py3-none-{m.group(2)}", wheel_file)
            self.assertRegex(z.read(f"{info}/entry_points.txt").decode(),
                             r"telespool-upload\s*=\s*telespool\.upload:main")
            self.assertIn(f'__version__ = "{self.version}"',
                          z.read("telespool/_version.py").decode())
            mode = z.getinfo("telespool/_bin/telespool-upload").external_attr >> 16
            self.assertTrue(mode & 0o111, oct(mode))
            if shutil.which("dpkg"):
                # The notices of what is linked in (SQLite, libyaml) or carried (cJSON).
                licences = {n.split("/")[-1] for n in names
                            if n.startswith("telespool/_licenses/")}
                self.assertEqual(licences, {"libsqlite3-dev", "libyaml-dev", "libcjson1"})
                self.assertIn(b"Permission is hereby granted",
                              z.read("telespool/_licenses/libyaml-dev"))

    def test_builds_again_after_the_checkout_moved(self):
        # The first build left lib/python/build/ (CMake's cache names the old directory) and
        # a module since deleted from the package.
        moved = os.path.join(self.tmp, "moved")
        os.rename(self.checkout, moved)
        self.addCleanup(os.rename, moved, self.checkout)
        build = os.path.join(moved, "lib", "python", "build")
        pkgs = [os.path.join(build, d, "telespool") for d in os.listdir(build)
                if d.startswith("lib") and os.path.isdir(os.path.join(build, d, "telespool"))]
        self.assertEqual(len(pkgs), 1, os.listdir(build))
        stale = os.path.join(pkgs[0], "gone.py")
        with open(stale, "w") as f:
            f.write("# deleted from the package since the last build\n")
        dist = os.path.join(self.tmp, "dist-moved")
        p = subprocess.run([self.py, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                            os.path.join(moved, "lib", "python"), "-w", dist],
                           cwd=self.tmp, env=self.build_env, capture_output=True, text=True,
                           timeout=600)
        self.assertEqual(p.returncode, 0, f"{p.stdout}\n{p.stderr}")
        with zipfile.ZipFile(os.path.join(dist, os.path.basename(self.wheel))) as z:
            names = set(z.namelist())
        self.assertIn("telespool/_bin/telespool-upload", names)
        self.assertNotIn("telespool/gone.py", names)

    def test_binaries_need_only_glibc_and_what_is_inside(self):
        inside = set(os.listdir(os.path.join(self.pkg, "_lib")))
        self.assertIn("libtelespool.so.0", inside)
        newest = (2, 0)
        for elf in self.elves():
            dyn = readelf("-d", elf)
            needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", dyn)
            outside = [n for n in needed if not GLIBC_LIBS.match(n) and n not in inside]
            self.assertEqual(outside, [], f"{elf} needs {needed}")
            for dep in ("libsqlite3", "libyaml", "libcurl"):
                self.assertFalse(any(n.startswith(dep) for n in needed), (elf, needed))
            if any(not GLIBC_LIBS.match(n) for n in needed):
                runpath = re.search(r"\((?:RUNPATH|RPATH)\)\s+Library r(?:un)?path: \[([^\]]+)\]",
                                    dyn)
                self.assertIsNotNone(runpath, f"{elf} has no run path")
                self.assertIn(runpath.group(1), ("$ORIGIN", "$ORIGIN/../_lib"))
            for a, b in re.findall(r"Name: GLIBC_(\d+)\.(\d+)", readelf("-V", elf)):
                newest = max(newest, (int(a), int(b)))
            ldd = subprocess.run(["ldd", elf], capture_output=True, text=True,
                                 env=clean_env(LC_ALL="C")).stdout
            self.assertNotIn("not found", ldd, ldd)
            for line in ldd.splitlines():
                m = re.match(r"\s*(\S+) => (\S+)", line)
                if m and not GLIBC_LIBS.match(m.group(1)):
                    self.assertTrue(os.path.realpath(m.group(2)).startswith(
                        os.path.realpath(self.pkg)), line)
        tag = re.search(r"-py3-none-([a-z0-9_]+)\.whl$", self.wheel).group(1)
        self.assertEqual(tag, f"manylinux_{newest[0]}_{newest[1]}_{os.uname().machine}")
        running = tuple(int(x) for x in os.confstr("CS_GNU_LIBC_VERSION").split()[1].split("."))
        self.assertLessEqual(newest, running[:2])

    def test_record_and_upload_from_outside_the_checkout(self):
        work = tempfile.mkdtemp(prefix="telespool-wheel-langbot-")
        self.addCleanup(shutil.rmtree, work, True)
        self.assertFalse(os.path.realpath(work).startswith(os.path.realpath(ROOT) + os.sep))
        os.makedirs(os.path.join(work, "data"))
        space = FakeSpace().start()
        self.addCleanup(space.stop)
        with open(os.path.join(work, "data", "config.yaml"), "w") as f:
            f.write(f"space:\n  url: '{space.url}'\n  disable_telemetry: false\n"
                    f"system:\n  instance_id: '{INSTANCE_ID}'\n")
        py = os.path.join(self.venv, "bin", "python")
        env = clean_env()

        p = subprocess.run([py, "-c", RECORD, "5", "w", INSTANCE_ID], cwd=work, env=env,
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        info = json.loads(p.stdout)
        self.assertEqual(info["library"], os.path.join(self.pkg, "_lib", "libtelespool.so.0"))
        self.assertTrue(info["module"].startswith(self.pkg), info)
        self.assertEqual(info["version"], self.version)
        self.assertEqual(info["library_version"], self.version)

        script = os.path.join(self.venv, "bin", "telespool-upload")
        p = subprocess.run([script, "--version"], cwd=work, env=env, capture_output=True,
                           text=True, timeout=60)
        self.assertEqual(p.stdout.strip(),
                         f"telespool-upload {self.version} (libtelespool {self.version})")
        p = subprocess.run([script], cwd=work, env=env, capture_output=True, text=True,
                           timeout=120)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertRegex(p.stderr, r"ok: sent 5, retried 0, dead 0, purged 0")
        got = sorted(json.loads(r["body"])["query_id"] for r in space.requests())
        self.assertEqual(got, [f"w-{i}" for i in range(5)])

        # LangBot's own way: the async helper runs the bundled program.
        p = subprocess.run([py, "-c", RECORD, "3", "x", INSTANCE_ID], cwd=work, env=env,
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        p = subprocess.run([py, "-c", UPLOAD_ONCE], cwd=work, env=env, capture_output=True,
                           text=True, timeout=120)
        self.assertEqual(p.returncode, 0, p.stderr)
        result = json.loads(p.stdout)
        self.assertEqual((result["outcome"], result["exit_code"], result["sent"],
                          result["pending"]), ("ok", 0, 3, 0), result)
        self.assertEqual(len(space.requests()), 8)


if __name__ == "__main__":
    unittest.main()
