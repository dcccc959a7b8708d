"""
Child processes for the tests: C{twistd} and the example scripts, started
in a session of their own, their output collected line by line as it comes.

Every process is ended, with whatever it started (twistd's workers), and
reaped when its test ends (the C{processes} and C{twistd} fixtures of
C{tests/conftest.py}), and every wait is bounded by L{WAIT}.  Nothing here
knows what a test checks or what the processes serve.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

REPO = Path(__file__).resolve().parent.parent
HELLO = REPO / "examples" / "hello"

#: Seconds any one wait may take: a process starting, answering or ending.
WAIT = 20.0

#: twistd itself, run by the interpreter running the tests.
TWISTD = [sys.executable, "-c",
          "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()"]

#: The startup line: what is served where.
SERVING = re.compile(r"Serving (?P<served>.+?) on (?P<where>.+?) \(transport=(?P<transport>\S+)"
                     r" protocol=(?P<protocol>\S+)")


def environment(pythonpath: Sequence[Path] | None = None, **extra: str) -> dict[str, str]:
    """
    This environment without its C{PYTHONPATH}, or with C{pythonpath}
    instead, unbuffered, plus C{extra}.
    """
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PYTHONUNBUFFERED"] = "1"
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(str(path) for path in pythonpath)
    env.update(extra)
    return env


def tcpPortOf(serving: re.Match[str]) -> int:
    """
    The TCP port on 127.0.0.1 of a startup line.
    """
    found = re.search(r"tcp:127\.0\.0\.1:(\d+)", serving.group("where"))
    assert found, serving.group(0)
    return int(found.group(1))


def killSession(process: subprocess.Popen[str]) -> None:
    """
    Kill C{process} and every process of its session (started with
    C{start_new_session}), and reap it, within L{WAIT}.
    """
    pid = process.pid
    if process.returncode is not None:
        # Reaped: its pid is free for a stranger, who must not be hit if it
        # leads a group of its own.  Ours lives on while any of its members
        # does (their group keeps the pid taken).
        try:
            if os.getpgid(pid) == pid:
                return
        except ProcessLookupError:
            pass
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass  # Every one of them has ended.
    process.wait(WAIT)


def run(*args: str, pythonpath: Sequence[Path] | None = None, cwd: Path | None = None,
        python: str = sys.executable) -> subprocess.CompletedProcess[str]:
    """
    Run C{twistd} (with C{python}) to its end, within twice L{WAIT}; what
    it leaves running is killed.

    @raise subprocess.TimeoutExpired: if it does not end in time.
    """
    command = [python, *TWISTD[1:], *args]
    with subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, cwd=cwd or REPO,
                          env=environment([REPO] if pythonpath is None else pythonpath),
                          start_new_session=True) as process:
        try:
            stdout, stderr = process.communicate(timeout=WAIT * 2)
        finally:
            killSession(process)
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


class Process:
    """
    A child process, in a session of its own, whose output lines are
    collected as they come.

    @ivar process: the L{subprocess.Popen}.
    @ivar stdout: its output lines so far (with its error output, if that
        was merged into it).
    @ivar stderr: its error output lines so far.
    """

    def __init__(self, argv: Sequence[str], *, cwd: Path | None = None,
                 env: Mapping[str, str] | None = None, mergeStderr: bool = False) -> None:
        self.args = list(argv)
        self.process = subprocess.Popen(
            self.args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if mergeStderr else subprocess.PIPE, text=True, cwd=cwd,
            env=env, start_new_session=True)
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        streams = [(self.process.stdout, self.stdout)]
        if not mergeStderr:
            streams.append((self.process.stderr, self.stderr))
        #: How many of its streams have not ended, as far as waits have seen.
        self._open = len(streams)
        self._readers = [threading.Thread(target=self._read, args=stream, daemon=True)
                         for stream in streams]
        for reader in self._readers:
            reader.start()

    def __repr__(self) -> str:
        return f"<process {' '.join(self.args)!r}>"

    def _read(self, stream: IO[str], lines: list[str]) -> None:
        for line in stream:
            lines.append(line)
            self._lines.put(line)
        self._lines.put(None)

    @property
    def output(self) -> str:
        """
        Everything it wrote so far: its output, then its error output.
        """
        return "".join(self.stdout) + "".join(self.stderr)

    def nextMatch(self, pattern: str | re.Pattern[str],
                  timeout: float = WAIT) -> re.Match[str] | None:
        """
        The first line matching C{pattern} among those no wait has looked at
        yet (or that are still to come); the lines before it are passed over.

        @return: its match, or C{None} if the output ends first.
        @raise AssertionError: if neither happens within C{timeout}.
        """
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while self._open:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no line matching {regex.pattern!r} from {self!r}"
                                     f" within {timeout}s:\n{self.output}")
            try:
                line = self._lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                self._open -= 1
                continue
            match = regex.search(line)
            if match:
                return match
        return None

    def waitFor(self, pattern: str | re.Pattern[str], timeout: float = WAIT) -> re.Match[str]:
        """
        Like L{nextMatch}, and the output ending first fails too.
        """
        match = self.nextMatch(pattern, timeout)
        if match is None:
            raise AssertionError(f"no line matching {re.compile(pattern).pattern!r} from"
                                 f" {self!r} before its output ended:\n{self.output}")
        return match

    def wait(self, timeout: float = WAIT) -> int:
        """
        Wait for it to end, and for its output to.

        @return: its exit status.
        @raise subprocess.TimeoutExpired: if it does not end within C{timeout}.
        """
        code = self.process.wait(timeout)
        for reader in self._readers:
            reader.join(timeout)
        return code

    def finish(self, timeout: float = WAIT) -> tuple[int, str]:
        """
        Wait for it to end.

        @return: its exit status and whole output.
        @raise AssertionError: if it or its output does not end within C{timeout}.
        """
        try:
            status = self.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{self!r} still running after {timeout}s:\n{self.output}") from None
        if any(reader.is_alive() for reader in self._readers):
            raise AssertionError(f"{self!r} ended but its output did not")
        return status, self.output

    def stop(self, sig: int = signal.SIGTERM, timeout: float = WAIT) -> int:
        """
        Send it C{sig} (if it still runs) and wait for it to end.

        @return: its exit status.
        @raise subprocess.TimeoutExpired: if it does not end within C{timeout}.
        """
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.wait(timeout)

    def kill(self) -> None:
        """
        Kill it and whatever it started, reap it, and close its output.
        """
        killSession(self.process)
        for reader in self._readers:
            reader.join(WAIT)
        if any(reader.is_alive() for reader in self._readers):
            # Something outside its session holds its output open; closing a
            # stream a reader is blocked on would block here too.
            return
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


class Twistd(Process):
    """
    A C{twistd -n} process logging to its output, run from the repository
    with only C{pythonpath} (by default the repository) on C{PYTHONPATH},
    and C{env} added to its environment.
    """

    def __init__(self, *args: str, pythonpath: Sequence[Path] | None = None,
                 cwd: Path | None = None, **env: str) -> None:
        super().__init__(
            [*TWISTD, "-n", "--pidfile=", "--logfile=-", *args], cwd=cwd or REPO,
            env=environment([REPO] if pythonpath is None else pythonpath, **env))

    def serving(self) -> re.Match[str]:
        """
        Its startup line.
        """
        return self.waitFor(SERVING)

    def tcpPort(self) -> int:
        """
        The TCP port on 127.0.0.1 of its startup line.
        """
        return tcpPortOf(self.serving())


class Processes:
    """
    The processes one test starts; L{killAll} ends every one of them.
    """

    def __init__(self) -> None:
        self._started: list[Process] = []

    def _track(self, process: Process) -> Process:
        self._started.append(process)
        return process

    def twistd(self, *args: str, pythonpath: Sequence[Path] | None = None,
               cwd: Path | None = None, **env: str) -> Twistd:
        """
        Start a L{Twistd}.
        """
        process = Twistd(*args, pythonpath=pythonpath, cwd=cwd, **env)
        self._track(process)
        return process

    def python(self, *args: str, cwd: Path | None = None) -> Process:
        """
        Start this interpreter with C{args}, in this environment, its error
        output merged into its output.
        """
        return self._track(Process([sys.executable, *args], cwd=cwd,
                                   env=dict(os.environ, PYTHONUNBUFFERED="1"), mergeStderr=True))

    def command(self, *argv: str, cwd: Path | None = None) -> Process:
        """
        Start any program (HAProxy, say), its error output merged into its
        output.
        """
        return self._track(Process(list(argv), cwd=cwd, env=dict(os.environ),
                                   mergeStderr=True))

    def killAll(self) -> None:
        """
        Kill every process started, with what each started, and reap them.
        """
        failures: list[BaseException] = []
        for process in self._started:
            try:
                process.kill()
            except Exception as failure:
                failures.append(failure)
        if failures:
            raise failures[0]
