"""
The README's "Using txthrift in your own project" walkthrough, run as a
user would, in an empty folder: its IDL through Apache's real compiler, its
handler under C{twistd -n thrift}, its two clients making their calls.

Every file and command comes out of the README itself (L{tests._readme});
the only changes are the port (0 instead of 9090, then the one bound) and
C{PATH}, which starts with this interpreter's folder, so that C{python} and
C{twistd} are the ones txthrift is installed in.  Installing txthrift is the
one step not taken here: tests/test_packaging.py installs the built wheel.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests import _readme
from tests._processes import SERVING, WAIT, Process, environment, tcpPortOf

README_PORT = "9090"


def compilerOrSkip() -> None:
    """
    Skip when Apache's C{thrift} compiler is missing and could not have
    been installed; fail where scripts/setup.sh installs it (root with
    apt-get, as in CI), so CI never skips.
    """
    if shutil.which("thrift"):
        return
    if os.geteuid() == 0 and shutil.which("apt-get"):
        pytest.fail("no 'thrift' compiler: bash scripts/setup.sh installs it (thrift-compiler)"
                    " when run as root with apt-get")
    pytest.skip("Apache's 'thrift' compiler is not installed (on Debian or Ubuntu: apt-get"
                " install thrift-compiler; scripts/setup.sh does it when run as root)")


def userEnvironment() -> dict[str, str]:
    """
    A user's shell: no C{PYTHONPATH}, this interpreter's C{python} and
    C{twistd} first on C{PATH}.
    """
    env = environment()
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def shell(script: str, folder: Path) -> subprocess.CompletedProcess[str]:
    """
    Run C{script} with bash in C{folder}, to its end, within twice L{WAIT}.
    """
    return subprocess.run(["bash", "-e", "-c", script], cwd=folder, env=userEnvironment(),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=WAIT * 2, check=False)


def withPort(text: str, port: str) -> str:
    """
    C{text} with the README's port replaced by C{port}.
    """
    assert README_PORT in text, f"the README's port {README_PORT} is not in:\n{text}"
    return text.replace(README_PORT, port)


def test_walkthroughServesItsServiceToBothClients(tmp_path: Path) -> None:
    """
    IDL, generated code, handler, C{twistd -n thrift}, then each client's
    call, as the README writes them; each client prints what the README
    says it prints, and the server stops cleanly.
    """
    compilerOrSkip()
    section = _readme.section()
    files = _readme.files(section)
    clients = {name: text for name, text in files.items() if "client" in name}
    for name, text in files.items():
        if name not in clients:
            (tmp_path / name).write_text(text)

    generated = shell(_readme.command(section, "thrift --gen"), tmp_path)
    assert generated.returncode == 0, generated.stderr

    serve = _readme.command(section, "twistd -n thrift")
    server = Process(["bash", "-c", withPort(serve, "0")], cwd=tmp_path, env=userEnvironment(),
                     mergeStderr=True)
    try:
        port = str(tcpPortOf(server.waitFor(SERVING)))
        for name, text in clients.items():
            (tmp_path / name).write_text(withPort(text, port))
        calls = _readme.printing(_readme.command(section, "python client.py"))
        assert {command.split()[-1] for command, _ in calls} == set(clients)
        for command, expected in calls:
            called = shell(command, tmp_path)
            assert (called.returncode, called.stdout.splitlines()) == (0, expected), \
                f"{command}:\n{called.stdout}{called.stderr}\nserver:\n{server.output}"
        assert server.stop() == 0, server.output
        assert "Traceback" not in server.output, server.output
    finally:
        server.kill()
