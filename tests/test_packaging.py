"""
txthrift as a user gets it: an sdist and a wheel made by C{python -m build},
accepted by C{twine check}, and the wheel alone installed in a fresh
virtualenv, serving through its twistd plugin, also where site-packages is
read-only to the user who runs twistd.

Needs PyPI (or a pip cache or find-links holding what follows): the build's
isolated environment gets setuptools and wheel, and the fresh virtualenv the
wheel's dependencies (Twisted, thrift, zope.interface), as any user's would;
pip's cache keeps later runs to seconds.  Every build, install and process
is bounded in time.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from email.parser import HeaderParser
from pathlib import Path

import pytest

from tests import _readme
from tests._processes import REPO, SERVING, WAIT, Process, environment, tcpPortOf

#: Seconds a build or an install may take (a first install downloads and builds thrift).
SLOW = 240.0

#: Twisted's line when it cannot rewrite its plugin cache.
CACHE_UNWRITABLE = "Unable to write to plugin cache"

#: A call through the wheel's txthrift, from the fresh virtualenv.
CALL = """
import sys
from twisted.internet.task import react
import txthrift
from HelloService import HelloService

async def main(reactor):
    client = await txthrift.connect(
        reactor, f"tcp:host=127.0.0.1:port={sys.argv[1]}", HelloService, timeout=10)
    try:
        print(await client.getData("wheel"))
    finally:
        await client.close()

react(main)
"""

#: Run the rest of the command line without root's licence to write anywhere
#: (prctl PR_CAPBSET_DROP of CAP_DAC_OVERRIDE), so that a folder's mode holds for it.
NO_OVERRIDE = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(24, 1, 0, 0, 0) != 0:  # PR_CAPBSET_DROP, CAP_DAC_OVERRIDE
    sys.exit("cannot drop CAP_DAC_OVERRIDE: " + os.strerror(ctypes.get_errno()))
os.execv(sys.argv[1], sys.argv[1:])
"""


def run(*argv: str | Path, cwd: Path, timeout: float = SLOW,
        **env: str) -> subprocess.CompletedProcess[str]:
    """
    Run C{argv} to its end in C{cwd} (never the repository, whose
    C{txthrift} C{python -c} would import) with no C{PYTHONPATH} (plus
    C{env}), failing the test if it fails.
    """
    done = subprocess.run([str(arg) for arg in argv], env=environment(None, **env), cwd=cwd,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout, check=False)
    assert done.returncode == 0, f"{argv}:\n{done.stdout}{done.stderr}"
    return done


class Installed:
    """
    The built sdist and wheel, and a fresh virtualenv with the wheel
    installed, in one temporary folder.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        dist = folder / "dist"
        run(sys.executable, "-m", "build", "--outdir", dist, REPO, cwd=folder)
        self.sdist = next(dist.glob("txthrift-*.tar.gz"))
        self.wheel = next(dist.glob("txthrift-*.whl"))
        self.venv = folder / "venv"
        run(sys.executable, "-m", "venv", self.venv, cwd=folder, timeout=WAIT * 3)
        self.python = self.venv / "bin" / "python"
        self.twistd = self.venv / "bin" / "twistd"
        run(self.python, "-m", "pip", "install", "--no-input", "--disable-pip-version-check",
            "-q", self.wheel, cwd=folder)
        found = run(self.python, "-c", "import twisted.plugins as p; print(p.__path__[0])",
                    cwd=folder)
        self.plugins = Path(found.stdout.strip())
        self.hello = folder / "hello"
        shutil.copytree(REPO / "examples" / "hello", self.hello,
                        ignore=shutil.ignore_patterns("__pycache__"))

    def serve(self, readOnly: bool = False) -> Process:
        """
        Start the example's handler under the virtualenv's C{twistd -n
        thrift} on 127.0.0.1, port 0; with C{readOnly}, unable to write
        where a folder's mode says so, even as root.
        """
        argv = [str(self.twistd), "-n", "--pidfile=", "--logfile=-", "thrift",
                "--handler", "hello_handler.HelloServiceHandler",
                "--port", "tcp:0:interface=127.0.0.1"]
        if readOnly and os.geteuid() == 0:
            argv = [sys.executable, "-c", NO_OVERRIDE, *argv]
        pythonpath = [self.hello, self.hello / "gen"]
        return Process(argv, cwd=self.folder, env=environment(pythonpath), mergeStderr=True)

    def call(self, port: int) -> str:
        """
        One call, by the virtualenv's txthrift, to the example's service.
        """
        done = run(self.python, "-c", CALL, str(port), cwd=self.folder, timeout=WAIT,
                   PYTHONPATH=str(self.hello / "gen"))
        return done.stdout.strip()


@pytest.fixture(scope="module")
def installed() -> Iterator[Installed]:
    """
    One build and install for every test here.
    """
    with tempfile.TemporaryDirectory(prefix="txthrift-packaging-") as folder:
        yield Installed(Path(folder))


def metadata(wheel: Path) -> tuple[dict[str, list[str]], str]:
    """
    The wheel's METADATA headers (name to values) and long description.
    """
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        message = HeaderParser().parsestr(archive.read(name).decode("utf-8"))
    headers: dict[str, list[str]] = {}
    for key, value in message.items():
        headers.setdefault(key, []).append(value)
    return headers, str(message.get_payload())


def test_twineAcceptsBoth(installed: Installed) -> None:
    """
    C{twine check --strict}: both render on an index, warnings included.
    """
    run(sys.executable, "-m", "twine", "check", "--strict", installed.sdist, installed.wheel,
        cwd=installed.folder, timeout=WAIT * 3)


def test_sdistHoldsWhatABuildNeeds(installed: Installed) -> None:
    """
    The sdist holds the build's inputs (the wheel here was built from it),
    the licence and changelog, and no build output nor benchmark results.
    """
    with tarfile.open(installed.sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert {"setup.py", "setup.cfg", "pyproject.toml", "MANIFEST.in", "README.md", "LICENSE",
            "CHANGELOG.md", "txthrift/_speedups.c", "txthrift/_speedups.pyi", "txthrift/py.typed",
            "twisted/plugins/txthrift_plugin.py", "tests/conftest.py",
            "examples/hello/gen/HelloService/HelloService.py"} <= names
    assert not [name for name in names if name.endswith((".so", ".pyc", "dropin.cache"))
                or name.startswith("benchmarks/")]


def test_wheelShipsThePluginAndNoTwistedPackage(installed: Installed) -> None:
    """
    The wheel has txthrift, its twistd dropin (and no C{__init__.py} that
    would shadow Twisted's own packages), py.typed and the licence; the C
    extension too wherever a C compiler is.
    """
    with zipfile.ZipFile(installed.wheel) as archive:
        names = set(archive.namelist())
    assert {"twisted/plugins/txthrift_plugin.py", "txthrift/__init__.py", "txthrift/py.typed",
            "txthrift/_speedups.pyi"} <= names
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names), names
    assert not {"twisted/__init__.py", "twisted/plugins/__init__.py"} & names
    assert not [name for name in names if name.startswith(("tests/", "examples/"))]
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler):
        assert any(re.match(r"txthrift/_speedups\..*\.so$", name) for name in names), names


def test_longDescriptionReadsWellOnAnIndex(installed: Installed) -> None:
    """
    The long description is the README for users: no set-up scripts, no
    relative links (which break on an index), the user's sections kept and
    the repository's left out; the metadata says licence, Pythons and
    framework.
    """
    headers, description = metadata(installed.wheel)
    assert description.startswith("# txthrift\n")
    assert "scripts/" not in description
    assert not re.findall(r"\]\((?!https?://)[^)]*\)", description)
    for kept in ("## Quickstart", "## Using txthrift in your own project", "## Limits",
                 "## Hosting with twistd"):
        assert f"\n{kept}\n" in description
    for left in ("## Layers", "## Conformance and speed", "## Generated code", "## Tests"):
        assert f"\n{left}\n" not in description
    assert headers["License-Expression"] == ["MIT"]
    assert headers["Description-Content-Type"] == ["text/markdown"]
    lowest = re.fullmatch(r">=3\.(\d+)", headers["Requires-Python"][0])
    assert lowest, headers["Requires-Python"]
    assert {f"Programming Language :: Python :: 3.{lowest[1]}", "Framework :: Twisted",
            "Typing :: Typed"} <= set(headers["Classifier"])
    licence = (REPO / "LICENSE").read_text()
    assert licence.startswith("MIT License") and "the txthrift authors" in licence


def test_freshVirtualenvServesThroughThePlugin(installed: Installed) -> None:
    """
    With only the wheel installed: C{twistd thrift --help} lists the
    options, and C{twistd -n thrift} serves the example's handler and
    answers a call made with the wheel's txthrift.
    """
    where = run(installed.python, "-c", "import txthrift; print(txthrift.__file__)",
                cwd=installed.folder)
    assert where.stdout.startswith(str(installed.venv)), where.stdout
    helped = run(installed.twistd, "thrift", "--help", cwd=installed.folder, timeout=WAIT)
    assert "--handler" in helped.stdout and helped.stderr == ""
    server = installed.serve()
    try:
        port = tcpPortOf(server.waitFor(SERVING))
        assert installed.call(port) == "wheel from server 1024"
        assert server.stop() == 0, server.output
    finally:
        server.kill()
    assert CACHE_UNWRITABLE not in server.output and "Traceback" not in server.output, \
        server.output


def test_readOnlySitePackagesAfterTheReadmesRefresh(installed: Installed) -> None:
    """
    A site-packages the twistd user cannot write: with a stale plugin cache
    twistd says so on every start (so the trial is truly read-only); after
    the README's one refresh, as the installing user, it starts silently
    and serves.
    """
    cache = installed.plugins / "dropin.cache"
    cache.unlink(missing_ok=True)
    mode = installed.plugins.stat().st_mode
    refresh = shlex.split(_readme.command(_readme.section(), "getPlugins"))
    assert refresh[:2] == ["python", "-c"], refresh
    try:
        for refreshed in (False, True):
            if refreshed:
                installed.plugins.chmod(mode)
                run(installed.python, *refresh[1:], cwd=installed.folder, timeout=WAIT)
                assert cache.exists()
            installed.plugins.chmod(0o555)
            server = installed.serve(readOnly=True)
            try:
                port = tcpPortOf(server.waitFor(SERVING))
                assert installed.call(port) == "wheel from server 1024"
                assert server.stop() == 0, server.output
            finally:
                server.kill()
            assert (CACHE_UNWRITABLE in server.output) is not refreshed, server.output
    finally:
        installed.plugins.chmod(mode)
