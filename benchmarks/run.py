#!/usr/bin/env python3
"""
txthrift benchmark harness: servers side by side, client, intake, memory, workers, profile.

    python benchmarks/run.py            # full run (~20 minutes)
    python benchmarks/run.py --quick    # smoke run (~3 minutes)
    python benchmarks/run.py --only 'txthrift*,raw-twisted,memory'

See benchmarks/README.md for what is measured and how to read the output.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import fnmatch
import html
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
HELLO = os.path.join(ROOT, "examples", "hello")
RESULTS = os.path.join(HERE, "results")
BUILD = os.path.join(HERE, "build")
PY = sys.executable
HOST = "127.0.0.1"
KiB, MiB = 1024, 1024 * 1024

SUFFIX = b" from server 1024"
INPUT = b"client access"


# --------------------------------------------------------------------------
# What is measured
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class Target:
    name: str      # what --only matches and the tables show
    server: str    # the server process (a servers.py kind) it loads
    framed: bool   # how the load generator frames requests
    label: str
    protocol: str = "binary"  # what the load generator speaks: binary, compact or json
    header: bool = False      # THeader frames around the protocol's messages (framed too)


TARGETS = [
    Target("txthrift", "txthrift", True, "txthrift, auto transport/protocol (twistd thrift)"),
    Target("txthrift-fixed", "txthrift-fixed", True, "txthrift.serve(transport='framed', protocol='binary')"),
    Target("txthrift-unframed", "txthrift", False, "txthrift auto, the load sent unframed"),
    Target("txthrift-header", "txthrift", True, "txthrift auto, the load in THeader around binary",
           header=True),
    Target("txthrift-metrics", "txthrift-metrics", True,
           "txthrift auto, with --metrics-port (Prometheus metrics counted)"),
    Target("txthrift-accesslog", "txthrift-accesslog", True,
           "txthrift auto, with --access-log FILE (a JSON line per call)"),
    Target("txthrift-trace", "txthrift-trace", True,
           "txthrift auto, with --trace (opentelemetry-api, no SDK: a no-op tracer)"),
    Target("txthrift-compact", "txthrift", True, "txthrift auto, the load in compact, framed",
           "compact"),
    Target("txthrift-json", "txthrift", True, "txthrift auto, the load in JSON, framed", "json"),
    Target("apache-twisted", "apache-twisted", True, "Apache TTwisted, py:twisted, TBinaryProtocol"),
    Target("apache-twisted-accel", "apache-twisted-accel", True, "Apache TTwisted, TBinaryProtocolAccelerated"),
    Target("apache-threadpool", "apache-threadpool", False, "Apache TThreadPoolServer, buffered (seed setup)"),
    Target("apache-nonblocking", "apache-nonblocking", True, "Apache TNonblockingServer, framed"),
    Target("raw-twisted", "raw-twisted", True, "Twisted Int32StringReceiver, precomputed reply"),
    Target("thriftpy2-threaded", "thriftpy2-threaded", True, "thriftpy2 TThreadedServer, framed, Cython"),
    Target("thriftpy2-aio", "thriftpy2-aio", True, "thriftpy2 asyncio server, framed"),
]
SECTIONS = ("client", "http", "intake", "memory", "workers", "profile")
#: --only names for the targets a comparison needs together.
ONLY_GROUPS = {"header": ("txthrift", "txthrift-header"),
               "observers": ("txthrift", "txthrift-metrics", "txthrift-accesslog",
                             "txthrift-trace")}
#: The twistd thrift options of the servers watched by an observer.
OBSERVED = {"txthrift-metrics": ["--metrics-port", f"tcp:0:interface={HOST}"],
            "txthrift-accesslog": ["--access-log", "{logdir}/access.log"],
            "txthrift-trace": ["--trace"]}

# (payload bytes, connections, in flight per connection)
SMALL, MEDIUM, LARGE = 13, 4 * KiB, 1 * MiB
POINTS = [
    (SMALL, 1, 1), (SMALL, 4, 16), (SMALL, 32, 8),
    (MEDIUM, 1, 1), (MEDIUM, 4, 16), (MEDIUM, 32, 8),
    (LARGE, 1, 1), (LARGE, 4, 2),
]

# Server CPU per call is compared across protocols at these points: each
# payload at a shape that keeps the server's core busy.
CPU_POINTS = [(SMALL, 4, 16), (MEDIUM, 4, 16), (LARGE, 4, 2)]
# The target measuring txthrift (auto) with each protocol, framed.
PROTOCOL_TARGETS = {"binary": "txthrift", "compact": "txthrift-compact", "json": "txthrift-json"}
# The client section's shape: one connection, 100 calls in flight.
CLIENT_POINT = (SMALL, 1, 100)
# The HTTP section's shape: 4 kept-alive connections, 16 requests pipelined on
# each.  Apache's THttpServer answers one request at a time and closes each
# connection after it (HTTP/1.0), with a listen backlog of 5: it gets 4
# connections of one request each, connected again after every reply.
HTTP_POINT = (SMALL, 4, 16)
HTTP_ONE_EACH = (SMALL, 4, 1)
HTTP_SERVERS = {"txthrift-http": HTTP_POINT, "raw-web": HTTP_POINT,
                "apache-http": HTTP_ONE_EACH}

# Measured before on this kind of machine (the team's anchors), small framed calls.
ANCHORS = {
    "raw-twisted": {(1, 1): "14-18k", (4, 16): "160-195k", (32, 8): "150-165k"},
    "apache-twisted": {(1, 1): "10k", (4, 16): "34k", (32, 8): "28-31k"},
    "apache-twisted-accel": {(1, 1): "9-10k", (4, 16): "28-31k", (32, 8): "22-25k"},
    "apache-threadpool": {(1, 1): "20k", (4, 16): "51-54k", (32, 8): "42k"},
    "thriftpy2-threaded": {(1, 1): "24k", (4, 16): "64-70k", (32, 8): "51-61k"},
    "thriftpy2-aio": {(1, 1): "7-8k", (4, 16): "16-17k", (32, 8): "17k"},
}


def pointKey(point: tuple[int, int, int]) -> str:
    payload, conns, depth = point
    return f"{sizeName(payload)} C={conns} D={depth}"


def sizeName(n: int) -> str:
    if n >= MiB and n % MiB == 0:
        return f"{n // MiB} MiB"
    if n >= KiB and n % KiB == 0:
        return f"{n // KiB} KiB"
    return f"{n} B"


# --------------------------------------------------------------------------
# Processes: every child is tracked and killed at the end, whatever happens
# --------------------------------------------------------------------------

class Processes:
    def __init__(self) -> None:
        self.children: dict[int, subprocess.Popen] = {}

    def start(self, argv: list[str], log: str, env: dict[str, str] | None = None,
              cwd: str | None = None) -> subprocess.Popen:
        with open(log, "ab") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        self.children[proc.pid] = proc
        return proc

    def stop(self, proc: subprocess.Popen, grace: float = 3.0) -> None:
        """
        Terminate one child (its own session's process group), then kill it.
        """
        self.children.pop(proc.pid, None)
        if proc.poll() is None:
            for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    proc.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        else:
            # Its group may outlive it (forked helpers): end them too.
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def stopAll(self) -> None:
        for proc in list(self.children.values()):
            self.stop(proc, grace=1.0)


PROCS = Processes()


def _terminated(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def freePort() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def waitReady(proc: subprocess.Popen, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with status {proc.returncode}")
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"not listening on port {port} after {timeout:.0f} s")


def cpuTicks(pid: int) -> float | None:
    """
    User + system CPU seconds of a process, all its threads.
    """
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def minorFaults(pid: int) -> int | None:
    """
    Minor page faults of a process so far, all its threads: memory it had
    mapped in afresh (for big messages: memory the allocator gave back to
    the system after the last one).
    """
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[7])
    except (OSError, IndexError, ValueError):
        return None


def coreTimes(core: int) -> tuple[float, float] | None:
    """
    Busy and total seconds of one CPU so far (busy: all but idle and iowait;
    steal counts as busy, as another guest had the core).
    """
    try:
        with open("/proc/stat") as f:
            for line in f:
                if line.startswith(f"cpu{core} "):
                    ticks = [int(x) for x in line.split()[1:]]
                    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
                    total = sum(ticks[:8])
                    hz = os.sysconf("SC_CLK_TCK")
                    return (total - idle) / hz, total / hz
    except (OSError, ValueError):
        pass
    return None


def vmRSS(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


# --------------------------------------------------------------------------
# The harness
# --------------------------------------------------------------------------

@dataclass
class Server:
    kind: str
    port: int
    argv: list[str]
    proc: subprocess.Popen | None = None
    restarts: int = 0
    note: str = ""


@dataclass
class Harness:
    args: argparse.Namespace
    logdir: str
    env: dict[str, str] = field(default_factory=dict)
    pinServer: list[str] = field(default_factory=list)
    pinLoad: list[str] = field(default_factory=list)
    loadgen: str = ""
    twistd: list[str] | None = None
    twistdNote: str = ""
    notes: list[str] = field(default_factory=list)

    # ---- setup ----

    def setup(self) -> None:
        os.makedirs(BUILD, exist_ok=True)
        os.makedirs(RESULTS, exist_ok=True)
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = hard if hard == resource.RLIM_INFINITY else max(soft, hard)
        if want == resource.RLIM_INFINITY:
            want = 65536
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        except (ValueError, OSError) as e:
            self.notes.append(f"could not raise RLIMIT_NOFILE: {e}")
        self.env = dict(os.environ)
        paths = [HELLO, os.path.join(HELLO, "gen"), os.path.join(HERE, "gen"), ROOT]
        if self.env.get("PYTHONPATH"):
            paths.append(self.env["PYTHONPATH"])
        self.env["PYTHONPATH"] = os.pathsep.join(paths)
        self.env.pop("PYTHONSTARTUP", None)
        ncpu = len(os.sched_getaffinity(0))
        if shutil.which("taskset") and ncpu >= 2 and not self.args.no_pin:
            self.pinServer = ["taskset", "-c", str(self.args.server_core)]
            self.pinLoad = ["taskset", "-c", str(self.args.load_core)]
        else:
            self.notes.append("servers and load generator NOT pinned (no taskset, one CPU, or --no-pin)")
        self.loadgen = self.buildLoadgen()
        self.twistd, self.twistdNote = self.findTwistd()

    def buildLoadgen(self) -> str:
        source = os.path.join(HERE, "loadgen.c")
        binary = os.path.join(BUILD, "loadgen")
        cc = os.environ.get("CC", "cc")
        cmd = [cc, "-O2", "-Wall", "-o", binary, source]
        print("building:", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True, timeout=120)
        return binary

    def findTwistd(self) -> tuple[list[str] | None, str]:
        """
        The twistd command, if its C{thrift} plugin works here.
        """
        if self.args.no_twistd:
            return None, "FALLBACK (--no-twistd): txthrift.serve() script"
        exe = os.path.join(os.path.dirname(PY), "twistd")
        twistd = [exe] if os.path.exists(exe) else [
            PY, "-c", "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()"]
        try:
            probe = subprocess.run(twistd + ["thrift", "--help"], env=self.env, cwd=BUILD,
                                   capture_output=True, text=True, check=False, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as e:
            return None, f"twistd thrift unavailable ({e}); fallback: txthrift.serve() script"
        text = probe.stdout + probe.stderr
        if probe.returncode == 0 and "--handler" in text and "--port" in text:
            return twistd, "twistd -n thrift --handler ... --port ..."
        last = (text.strip().splitlines() or ["?"])[-1][:160]
        return None, f"twistd thrift unavailable ({last}); FALLBACK: txthrift.serve() script"

    # ---- servers ----

    def serverArgv(self, kind: str, port: int) -> list[str]:
        if kind == "txthrift-http" and self.twistd is not None:
            return self.pinServer + self.twistd + [
                "-n", "--pidfile=", "thrift",
                "--handler", "hello_handler.HelloServiceHandler",
                "--http-port", f"tcp:{port}:interface={HOST}"]
        if (kind == "txthrift" or kind in OBSERVED) and self.twistd is not None:
            return self.pinServer + self.twistd + [
                "-n", "--pidfile=", "thrift",
                "--handler", "hello_handler.HelloServiceHandler",
                "--port", f"tcp:{port}:interface={HOST}"] + [
                option.format(logdir=self.logdir) for option in OBSERVED.get(kind, [])]
        argv = self.pinServer + [PY, os.path.join(HERE, "servers.py"), kind, "--port", str(port)]
        if kind == "apache-threadpool":
            argv += ["--threads", str(self.args.pool_threads)]
        return argv

    def startServer(self, kind: str) -> Server:
        port = freePort()
        server = Server(kind, port, self.serverArgv(kind, port))
        self.launch(server)
        return server

    def launch(self, server: Server) -> None:
        log = os.path.join(self.logdir, f"server-{server.kind}.log")
        server.proc = PROCS.start(server.argv, log, env=self.env, cwd=self.logdir)
        try:
            waitReady(server.proc, server.port, self.args.start_timeout)
        except RuntimeError as e:
            PROCS.stop(server.proc)
            raise RuntimeError(f"server {server.kind} did not start: {e}; see {log}") from None

    def ensureAlive(self, server: Server) -> bool:
        if server.proc is not None and server.proc.poll() is None:
            return True
        if server.restarts >= 2:
            return False
        server.restarts += 1
        server.note = f"restarted {server.restarts}x (exit status {server.proc and server.proc.returncode})"
        print(f"  ! {server.kind} died; restarting", flush=True)
        server.port = freePort()
        server.argv = self.serverArgv(server.kind, server.port)
        try:
            self.launch(server)
            return True
        except RuntimeError as e:
            print(f"  ! {e}", flush=True)
            return False

    # ---- one load measurement ----

    def runLoadgen(self, port: int, point: tuple[int, int, int], framed: bool,
                   warmup: float, duration: float, pinned: bool = True,
                   protocol: str = "binary", serverPid: int | None = None,
                   http: str | None = None, header: bool = False) -> dict[str, Any]:
        """
        One load generator run.  With C{serverPid}, that process's CPU time
        over the measured window (read when the warm-up ends and when the
        load generator exits) is C{server_cpu_window_s}, and per call
        C{server_us_per_call}.  With C{header}, the load is in THeader frames.
        """
        payload, conns, depth = point
        transport = "--header" if header else "--framed" if framed else "--unframed"
        argv = (self.pinLoad if pinned else []) + [
            self.loadgen, "--port", str(port), "--conns", str(conns), "--depth", str(depth),
            "--payload", str(payload), transport,
            "--protocol", protocol, "--warmup", str(warmup), "--duration", str(duration)]
        if http is not None:
            argv += ["--http", http]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                stdin=subprocess.DEVNULL)
        try:
            cpuStart = faultsStart = None
            if serverPid is not None:
                time.sleep(warmup)
                cpuStart, faultsStart = cpuTicks(serverPid), minorFaults(serverPid)
            try:
                stdout, stderr = proc.communicate(timeout=duration + 30)
            except subprocess.TimeoutExpired:
                return {"failed": "load generator timed out"}
            cpuEnd = cpuTicks(serverPid) if serverPid is not None else None
            faultsEnd = minorFaults(serverPid) if serverPid is not None else None
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        try:
            result = json.loads(stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            return {"failed": f"status {proc.returncode}: {stderr.strip()[-300:]}"}
        if stderr.strip():
            result["stderr"] = stderr.strip()[-500:]
        if "error" in result:
            result["failed"] = result.pop("error")
        if cpuStart is not None and cpuEnd is not None:
            result["server_cpu_window_s"] = cpuEnd - cpuStart
            if result.get("calls"):
                result["server_us_per_call"] = (cpuEnd - cpuStart) / result["calls"] * 1e6
                if faultsStart is not None and faultsEnd is not None:
                    result["server_faults_per_call"] = (faultsEnd - faultsStart) / result["calls"]
        return result

    def measure(self, server: Server, target: Target, point: tuple[int, int, int]) -> dict[str, Any]:
        """
        One measurement, retried while something else took the server's core.
        """
        attempts = []
        for attempt in range(1 + self.args.retries):
            result = self.measureOnce(server, target, point)
            attempts.append(result)
            noise = result.get("foreign_cpu")
            if "failed" in result or noise is None or noise <= self.args.max_noise:
                break
            print(f"  ~ {target.name} {pointKey(point)}: {noise:.0%} of the server core went "
                  f"elsewhere; measuring again", flush=True)
            time.sleep(0.5)
        good = [r for r in attempts if "failed" not in r]
        best = min(good, key=lambda r: r.get("foreign_cpu") or 0.0) if good else attempts[-1]
        best["attempts"] = len(attempts)
        return best

    def measureOnce(self, server: Server, target: Target,
                    point: tuple[int, int, int]) -> dict[str, Any]:
        if not self.ensureAlive(server):
            return {"failed": f"server {server.kind} is down"}
        assert server.proc is not None
        pid = server.proc.pid
        core = self.args.server_core if self.pinServer else None
        before = cpuTicks(pid)
        coreBefore = coreTimes(core) if core is not None else None
        start = time.monotonic()
        result = self.runLoadgen(server.port, point, target.framed, self.args.warmup,
                                 self.args.duration, protocol=target.protocol, serverPid=pid,
                                 header=target.header)
        elapsed = time.monotonic() - start
        after = cpuTicks(pid)
        coreAfter = coreTimes(core) if core is not None else None
        if before is not None and after is not None and elapsed > 0:
            # Over warm-up and measurement both: close to the load's share.
            result["server_cpu_util"] = (after - before) / elapsed
            if coreBefore is not None and coreAfter is not None:
                busy = coreAfter[0] - coreBefore[0]
                total = coreAfter[1] - coreBefore[1]
                if total > 0:
                    # What the server core did besides running the server:
                    # other processes, interrupts, another guest (steal).
                    result["foreign_cpu"] = max(0.0, busy - (after - before)) / total
        if server.proc.poll() is not None:
            result.setdefault("failed", f"server exited with status {server.proc.returncode}")
        return result


# --------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------


def portableArgv(argv: list[str]) -> list[str]:
    """
    A command line as the results record it: the repository's files by
    their path inside it, other programs by name, so that no machine's
    paths go into the results.
    """
    shown = []
    for arg in argv:
        if os.path.isabs(arg):
            inside = os.path.relpath(arg, ROOT)
            arg = inside if not inside.startswith("..") else os.path.basename(arg)
        shown.append(arg)
    return shown


def portableProfile(svg: str) -> None:
    """
    Rewrite py-spy's flame graph so that it records no machine's paths: its
    title is the command line that made it (the interpreter, the output
    file), whose paths portableArgv shortens; any other mention of the
    repository's folder is made relative to it.
    """
    with open(svg, encoding="utf-8") as f:
        text = f.read()
    title = re.search(r'(<text id="title"[^>]*>)([^<]*)(</text>)', text)
    if title is not None:
        shown = " ".join(portableArgv(html.unescape(title.group(2)).split()))
        text = text[:title.start(2)] + html.escape(shown, quote=False) + text[title.end(2):]
    text = text.replace(ROOT + os.sep, "").replace(ROOT, ".")
    with open(svg, "w", encoding="utf-8") as f:
        f.write(text)


def measurementLine(result: dict[str, Any]) -> str:
    """
    One load measurement as the progress lines show it.
    """
    return result.get("failed") or (
        f"{result['calls_per_s']:>10,.0f} calls/s  p50 {result['p50_us']:>8,.0f} µs"
        f"  p99 {result['p99_us']:>8,.0f} µs  errors {result['errors']}"
        f"  srv cpu {result.get('server_cpu_util', 0):.0%}"
        f"  lg cpu {result['cpu_util']:.0%}"
        + (f"  noise {result['foreign_cpu']:.0%}" if "foreign_cpu" in result else ""))


def runServerBench(h: Harness, targets: list[Target]) -> tuple[list[dict], dict]:
    args = h.args
    kinds = sorted({t.server for t in targets}, key=[t.server for t in TARGETS].index)
    servers: dict[str, Server] = {}
    print(f"\n== servers: starting {len(kinds)} ({', '.join(kinds)})", flush=True)
    for kind in kinds:
        try:
            servers[kind] = h.startServer(kind)
        except RuntimeError as e:
            print(f"  ! {e}", flush=True)
    info = {k: {"argv": portableArgv(s.argv), "port": s.port} for k, s in servers.items()}
    measurements: list[dict] = []
    points = selectedPoints(args)
    total = len(points) * len(targets) * args.reps
    count = 0
    for rep in range(args.reps):
        for point in points:
            # Rotate the order each repetition so no server always follows another.
            shift = rep % len(targets)
            for target in targets[shift:] + targets[:shift]:
                count += 1
                server = servers.get(target.server)
                if server is None:
                    result: dict[str, Any] = {"failed": "server did not start"}
                else:
                    result = h.measure(server, target, point)
                    time.sleep(args.settle)
                result.update(target=target.name, payload=point[0], conns=point[1],
                              depth=point[2], rep=rep)
                measurements.append(result)
                print(f"[{count:>3}/{total}] rep {rep + 1} {pointKey(point):<18} "
                      f"{target.name:<21} {measurementLine(result)}", flush=True)
    for kind, server in servers.items():
        if server.note:
            info[kind]["note"] = server.note
        if server.proc is not None:
            PROCS.stop(server.proc)
    return measurements, info


def medians(measurements: list[dict]) -> dict[str, dict[str, dict[str, Any]]]:
    grouped: dict[tuple[str, str], list[dict]] = {}
    for m in measurements:
        grouped.setdefault((m["target"], pointKey((m["payload"], m["conns"], m["depth"]))),
                           []).append(m)
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for (target, key), runs in grouped.items():
        good = [r for r in runs if "failed" not in r]
        entry: dict[str, Any] = {"runs": len(runs), "failed_runs": len(runs) - len(good)}
        if good:
            for metric in ("calls_per_s", "mb_per_s", "p50_us", "p99_us", "cpu_util",
                           "server_cpu_util", "foreign_cpu", "server_us_per_call",
                           "server_faults_per_call"):
                values = [r[metric] for r in good if metric in r]
                if values:
                    entry[metric] = statistics.median(values)
            entry["errors"] = sum(r["errors"] for r in good)
            entry["fairness"] = statistics.median(
                r["conn_calls_min"] / r["conn_calls_max"] if r["conn_calls_max"] else 0.0
                for r in good)
            entry["calls_per_s_all"] = [r["calls_per_s"] for r in good]
        else:
            entry["failed"] = runs[-1].get("failed")
        out.setdefault(target, {})[key] = entry
    return out


def runJSON(argv: list[str], env: dict[str, str], timeout: float) -> dict[str, Any]:
    """
    Run a benchmark script and read the JSON object its last line of output holds.
    """
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False, env=env,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"failed": "timed out"}
    try:
        return json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError) as e:
        return {"failed": f"{type(e).__name__}: {done.stderr[-300:]}"}


def clientOnce(h: Harness, kind: str, port: int) -> dict[str, Any]:
    """
    One clientbench.py run of KIND against the server on PORT, in h's environment.
    """
    args = h.args
    argv = h.pinLoad + [PY, os.path.join(HERE, "clientbench.py"), kind,
                        "--port", str(port), "--warmup", str(args.warmup),
                        "--duration", str(args.duration), "--in-flight", "100"]
    return runJSON(argv, h.env, args.warmup + args.duration + 60)


def runClientBench(h: Harness) -> dict[str, Any]:
    """
    txthrift's pipelined client and Apache's sync client against raw-twisted,
    and the C load generator at the pipelined client's shape as the
    reference: what the raw server gives one connection with 100 in flight.
    """
    args = h.args
    shape = pointKey(CLIENT_POINT)
    print("\n== client: txthrift pipelined vs Apache sync, against raw-twisted; the C load "
          f"generator at {shape} as the reference", flush=True)
    server = h.startServer("raw-twisted")
    results: dict[str, list[dict]] = {"txthrift": [], "apache-sync": [], "loadgen": []}
    try:
        for rep in range(args.reps):
            for kind, runs in results.items():
                if kind == "loadgen":
                    r = h.runLoadgen(server.port, CLIENT_POINT, True, args.warmup, args.duration)
                    if "failed" not in r and r.get("errors"):
                        r["failed"] = f"{r['errors']} reply errors"
                else:
                    r = clientOnce(h, kind, server.port)
                runs.append(r)
                print(f"  rep {rep + 1} {kind:<12} "
                      f"{r.get('failed') or format(r['calls_per_s'], ',.0f') + ' calls/s'}"
                      f"{'' if r.get('failed') else '  errors ' + str(r['errors'])}", flush=True)
    finally:
        PROCS.stop(server.proc)
    floors = [runJSON(h.pinLoad + [PY, os.path.join(HERE, "clientbench.py"), "floor"], h.env, 300)
              for _ in range(args.reps)]
    floors = [f for f in floors if "failed" not in f]
    out: dict[str, Any] = {"server": "raw-twisted", "loadgen_point": shape, "runs": results}
    if floors:
        # What any Deferred-per-call Python client must spend, beside txthrift's whole path.
        out["floor"] = {key: statistics.median(f[key] for f in floors)
                        for key in ("deferred_us", "coding_us", "floor_us", "txthrift_us")}
    for kind, runs in results.items():
        good = [r["calls_per_s"] for r in runs if "failed" not in r]
        out[kind] = statistics.median(good) if good else None
        out[kind + "_errors"] = sum(r.get("errors", 0) for r in runs if "failed" not in r)
    if out["txthrift"] and out["apache-sync"]:
        out["ratio"] = out["txthrift"] / out["apache-sync"]
    if out["txthrift"] and out["loadgen"]:
        out["vs_loadgen"] = out["txthrift"] / out["loadgen"]
    return out


def runHttpBench(h: Harness) -> dict[str, Any]:
    """
    Thrift over HTTP: txthrift's HTTP server (twistd thrift --http-port)
    against Apache's THttpServer and a bare twisted.web resource answering a
    reply computed once (the limit), each with 64 requests in flight.
    """
    args = h.args
    print(f"\n== http: POST one message per request, {pointKey(HTTP_POINT)} pipelined on "
          f"kept-alive connections (Apache's THttpServer: {pointKey(HTTP_ONE_EACH)})", flush=True)
    servers = {kind: h.startServer(kind) for kind in HTTP_SERVERS}
    runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in HTTP_SERVERS}
    try:
        for rep in range(args.reps):
            for kind, point in HTTP_SERVERS.items():
                server = servers[kind]
                if not h.ensureAlive(server):
                    runs[kind].append({"failed": f"server {kind} is down"})
                    continue
                assert server.proc is not None
                r = h.runLoadgen(server.port, point, False, args.warmup, args.duration,
                                 serverPid=server.proc.pid, http="/")
                if "failed" not in r and r.get("errors"):
                    r["failed"] = f"{r['errors']} reply errors: {r.get('error_kinds')}"
                runs[kind].append(r)
                print(f"  rep {rep + 1} {kind:<14} {pointKey(point):<14} "
                      f"{r.get('failed') or format(r['calls_per_s'], ',.0f') + ' calls/s'}"
                      f"{'' if r.get('failed') else '  srv ' + fmtRate(r.get('server_us_per_call')) + ' us/call'}",
                      flush=True)
    finally:
        for server in servers.values():
            PROCS.stop(server.proc)
    out: dict[str, Any] = {"points": {kind: pointKey(p) for kind, p in HTTP_SERVERS.items()},
                           "runs": runs}
    for kind, results in runs.items():
        good = [r for r in results if "failed" not in r]
        out[kind] = statistics.median(r["calls_per_s"] for r in good) if good else None
        cpu = [r["server_us_per_call"] for r in good if r.get("server_us_per_call")]
        out[kind + "_us_per_call"] = statistics.median(cpu) if cpu else None
    if out["txthrift-http"] and out["apache-http"]:
        out["vs_apache"] = out["txthrift-http"] / out["apache-http"]
    if out["txthrift-http"] and out["raw-web"]:
        out["vs_raw_web"] = out["txthrift-http"] / out["raw-web"]
    return out


def intakeOnce(h: Harness, repeat: int) -> dict[str, Any]:
    """
    One intake.py run (medians of REPEAT feeds), in h's environment.
    """
    argv = h.pinLoad + [PY, os.path.join(HERE, "intake.py"), "--repeat", str(max(1, repeat))]
    return runJSON(argv, h.env, 300)


def runIntake(h: Harness) -> dict[str, Any]:
    print("\n== intake: one 16 MiB message in 4 KiB pieces, unframed vs framed", flush=True)
    out = intakeOnce(h, h.args.reps)
    if "failed" in out:
        return out
    for kind, m in out["messages"].items():
        print(f"  {kind:<7} framed {m['framed_ms']:8.1f} ms   unframed {m['buffered_ms']:8.1f} ms"
              f"   unframed/framed {m['buffered_over_framed']:.2f}x", flush=True)
    return out


WORKERS_POINT = (SMALL, 32, 8)


def runWorkers(h: Harness) -> dict[str, Any]:
    """
    C{twistd thrift --workers 2} against C{--workers 1}, alternated: nothing
    is pinned, since two workers need both cores (the load generator takes
    its share of them too).
    """
    key = pointKey(WORKERS_POINT)
    print(f"\n== workers: twistd thrift --workers 2 vs 1, {key}, nothing pinned", flush=True)
    if h.twistd is None:
        return {"failed": "twistd thrift is not available"}
    runs: dict[str, list[float]] = {"1": [], "2": []}
    out: dict[str, Any] = {"point": key, "runs": runs}
    try:
        for rep in range(max(1, h.args.reps)):
            for workers in ("1", "2"):
                port = freePort()
                argv = h.twistd + [
                    "-n", "--pidfile=", "thrift", "--handler", "hello_handler.HelloServiceHandler",
                    "--port", f"tcp:{port}:interface={HOST}", "--workers", workers]
                log = os.path.join(h.logdir, f"server-workers-{workers}.log")
                proc = PROCS.start(argv, log, env=h.env, cwd=h.logdir)
                try:
                    waitReady(proc, port, h.args.start_timeout)
                    # The port is the parent's: a call answered means a worker is up;
                    # then give the others as long again.
                    started = time.monotonic()
                    with socket.create_connection((HOST, port), timeout=h.args.start_timeout) as s:
                        _call(s, 1)
                    time.sleep(max(0.5, time.monotonic() - started))
                    result = h.runLoadgen(port, WORKERS_POINT, True, h.args.warmup,
                                          h.args.duration, pinned=False)
                finally:
                    PROCS.stop(proc)
                if "failed" in result or result.get("errors"):
                    raise RuntimeError(f"--workers {workers}: {result.get('failed', result)}")
                runs[workers].append(result["calls_per_s"])
                print(f"  rep {rep + 1} --workers {workers}: {result['calls_per_s']:>10,.0f} "
                      f"calls/s  p99 {result.get('p99_us', 0):,.0f} µs", flush=True)
    except (OSError, RuntimeError) as e:
        out["failed"] = f"{type(e).__name__}: {e}"
        print(f"  ! {out['failed']}", flush=True)
        return out
    one, two = statistics.median(runs["1"]), statistics.median(runs["2"])
    out.update({"workers_1": one, "workers_2": two, "ratio": two / one})
    print(f"  medians: 1 worker {one:,.0f}, 2 workers {two:,.0f} calls/s: {two / one:.2f}x",
          flush=True)
    return out


def _request(seqid: int) -> bytes:
    body = (b"\x80\x01\x00\x01" + (7).to_bytes(4, "big") + b"getData" + seqid.to_bytes(4, "big")
            + b"\x0b\x00\x01" + len(INPUT).to_bytes(4, "big") + INPUT + b"\x00")
    return len(body).to_bytes(4, "big") + body


def _call(sock: socket.socket, seqid: int) -> None:
    sock.sendall(_request(seqid))
    size = int.from_bytes(_recvExactly(sock, 4), "big")
    reply = _recvExactly(sock, size)
    if not reply.startswith(b"\x80\x01\x00\x02") or INPUT + SUFFIX not in reply:
        raise RuntimeError(f"bad reply {reply[:60]!r}")


def _recvExactly(sock: socket.socket, n: int) -> bytes:
    chunks, got = [], 0
    while got < n:
        chunk = sock.recv(n - got)
        if not chunk:
            raise RuntimeError("connection closed")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def runMemory(h: Harness) -> dict[str, Any]:
    n = h.args.idle_conns
    print(f"\n== memory: txthrift server RSS with {n:,} idle connections", flush=True)
    server = h.startServer("txthrift")
    assert server.proc is not None
    pid = server.proc.pid
    socks: list[socket.socket] = []
    out: dict[str, Any] = {"connections": n, "server": "txthrift (" + h.twistdNote.split(";")[0] + ")"}

    def fds() -> int:
        return len(os.listdir(f"/proc/{pid}/fd"))

    def settle(expected: int) -> None:
        deadline = time.monotonic() + 30
        while fds() < expected and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)

    try:
        # Warm the server up (imports, codecs) on a throwaway connection.
        with socket.create_connection((HOST, server.port), timeout=5) as s:
            for i in range(20):
                _call(s, i + 1)
        time.sleep(0.5)
        baseFds = fds()
        out["rss_before"] = before = vmRSS(pid)
        deadline = time.monotonic() + 120
        for _ in range(n):
            if time.monotonic() > deadline:
                raise RuntimeError(f"opening connections took over 120 s ({len(socks)} open)")
            s = socket.create_connection((HOST, server.port), timeout=10)
            socks.append(s)
        settle(baseFds + n)
        out["server_fds_opened"] = fds() - baseFds
        out["rss_idle_new"] = vmRSS(pid)
        out["per_conn_new_kib"] = (out["rss_idle_new"] - before) / n / KiB
        # Now use each once (framing detected, buffers made), then let them idle.
        for i, s in enumerate(socks):
            _call(s, i + 1)
        time.sleep(1.0)
        out["rss_idle_used"] = vmRSS(pid)
        out["per_conn_used_kib"] = (out["rss_idle_used"] - before) / n / KiB
        print(f"  RSS before {before / MiB:.1f} MiB; {n:,} connected, never used: "
              f"{out['rss_idle_new'] / MiB:.1f} MiB ({out['per_conn_new_kib']:.1f} KiB/conn); "
              f"after one call each: {out['rss_idle_used'] / MiB:.1f} MiB "
              f"({out['per_conn_used_kib']:.1f} KiB/conn)", flush=True)
    except (OSError, RuntimeError) as e:
        out["failed"] = f"{type(e).__name__}: {e}"
        print(f"  ! {out['failed']}", flush=True)
    finally:
        for s in socks:
            s.close()
        PROCS.stop(server.proc)
    return out


def _classify(frame: str) -> str:
    """
    A coarse bucket for a py-spy frame "function (path:line)".
    """
    path = frame.rsplit("(", 1)[-1]
    for needle, bucket in (
        ("txthrift/_codec", "txthrift codec"), ("txthrift/_framing", "txthrift framing"),
        ("txthrift/_scanning", "txthrift scanning"),
        ("txthrift/_server", "txthrift server/dispatch"),
        ("txthrift/_dispatch", "txthrift server/dispatch"), ("txthrift/", "txthrift other"),
        ("twisted/internet/defer", "Twisted Deferred"),
        ("twisted/internet/epollreactor", "reactor poll"),
        ("twisted/internet/tcp", "Twisted TCP read/write"),
        ("twisted/internet/abstract", "Twisted TCP read/write"),
        ("twisted/internet/", "Twisted reactor other"), ("twisted/", "Twisted other"),
        ("thrift/protocol", "Apache thrift protocol"), ("thrift/", "Apache thrift other"),
        ("HelloService", "generated code"), ("hello_handler", "handler"),
    ):
        if needle in path:
            return bucket
    return "other"


def summariseCollapsed(path: str, top: int = 20) -> dict[str, Any]:
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    buckets: dict[str, int] = {}
    total = 0
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            stack, _, count_text = line.rpartition(" ")
            try:
                count = int(count_text)
            except ValueError:
                continue
            frames = stack.split(";")
            # "func (file.py:123)" -> "func (file.py)": one entry per function.
            names = [fr.rsplit(":", 1)[0] + ")" if fr.endswith(")") and ":" in fr else fr
                     for fr in frames]
            total += count
            leaf = names[-1]
            own[leaf] = own.get(leaf, 0) + count
            buckets[_classify(frames[-1])] = buckets.get(_classify(frames[-1]), 0) + count
            for name in set(names):
                inclusive[name] = inclusive.get(name, 0) + count

    def ranked(table: dict[str, int], n: int) -> list[dict[str, Any]]:
        items = sorted(table.items(), key=lambda kv: -kv[1])[:n]
        return [{"function": k, "samples": v, "share": v / total if total else 0} for k, v in items]

    return {"samples": total, "own": ranked(own, top), "inclusive": ranked(inclusive, top),
            "own_by_area": ranked(buckets, 30)}


def runProfile(h: Harness) -> dict[str, Any]:
    args = h.args
    seconds = max(1, args.profile_seconds)  # py-spy takes whole seconds
    point = (SMALL, 4, 16)
    print(f"\n== profile: txthrift server under {pointKey(point)} load, {seconds:g} s", flush=True)
    pyspy = shutil.which("py-spy") or os.path.join(os.path.dirname(PY), "py-spy")
    if not os.path.exists(pyspy):
        return {"failed": "py-spy not installed (pip install py-spy)"}
    server = h.startServer("txthrift")
    assert server.proc is not None
    raw = os.path.join(RESULTS, "profile.raw.txt")
    svg = os.path.join(RESULTS, "profile.svg")
    out: dict[str, Any] = {"point": pointKey(point), "seconds": seconds,
                           "svg": os.path.relpath(svg, ROOT), "raw": os.path.relpath(raw, ROOT)}
    load = None
    try:
        loadArgv = h.pinLoad + [
            h.loadgen, "--port", str(server.port), "--conns", "4", "--depth", "16",
            "--payload", str(SMALL), "--framed", "--warmup", "1",
            "--duration", str(2 * seconds + 4)]
        load = PROCS.start(loadArgv, os.path.join(h.logdir, "profile-loadgen.log"))
        time.sleep(1.5)
        for fmt, dest in (("raw", raw), ("flamegraph", svg)):
            done = subprocess.run(
                [pyspy, "record", "--pid", str(server.proc.pid), "--duration", str(seconds),
                 "--rate", "250", "--idle", "--format", fmt, "--output", dest],
                capture_output=True, text=True, check=False, timeout=seconds + 60)
            if done.returncode != 0:
                out["failed"] = f"py-spy: {done.stderr.strip()[-300:]}"
                break
        if "failed" not in out:
            portableProfile(svg)
            out.update(summariseCollapsed(raw))
            print(f"  {out['samples']} samples (idle included: reactor waiting shows as poll)")
            print("  own time by area:")
            for row in out["own_by_area"][:10]:
                print(f"    {row['share']:6.1%}  {row['function']}")
            print("  top functions by own time:")
            for row in out["own"][:15]:
                print(f"    {row['share']:6.1%}  {row['function']}")
            print(f"  flame graph: {os.path.relpath(svg, ROOT)}")
    except (OSError, subprocess.TimeoutExpired) as e:
        out["failed"] = f"{type(e).__name__}: {e}"
    finally:
        if load is not None:
            PROCS.stop(load)
        PROCS.stop(server.proc)
    if "failed" in out:
        print(f"  ! {out['failed']}", flush=True)
    return out


# --------------------------------------------------------------------------
# Ratios, targets, report
# --------------------------------------------------------------------------

def ratio(med: dict, a: str, b: str, key: str, metric: str = "calls_per_s") -> float | None:
    x = med.get(a, {}).get(key, {}).get(metric)
    y = med.get(b, {}).get(key, {}).get(metric)
    if x is None or not y:
        return None
    return x / y


def evaluate(med: dict, client: dict | None, intake: dict | None, memory: dict | None,
             workers: dict | None = None,
             http: dict | None = None) -> tuple[list[dict], list[dict]]:
    ratios: list[dict] = []
    goals: list[dict] = []

    def goal(name: str, value: float | None, op: str, threshold: float, unit: str = "x",
             key: str | None = None, targets: tuple[str, ...] = ("txthrift",)) -> None:
        met = None if value is None else (value >= threshold if op == ">=" else value <= threshold)
        entry = {"goal": name, "value": value, "op": op, "threshold": threshold,
                 "unit": unit, "met": met}
        wrong = [t for t in targets if key is not None and med.get(t, {}).get(key, {}).get("errors")]
        if wrong:
            # A fast wrong answer is no answer.
            entry["met"] = False
            entry["goal"] += f" [{', '.join(wrong)} replied with errors]"
        goals.append(entry)

    for point in POINTS:
        key = pointKey(point)
        metric = "mb_per_s" if point[0] == LARGE else "calls_per_s"
        for other in ("apache-twisted", "apache-twisted-accel", "apache-threadpool",
                      "apache-nonblocking", "thriftpy2-threaded", "thriftpy2-aio", "raw-twisted",
                      "txthrift-fixed"):
            r = ratio(med, "txthrift", other, key, metric)
            if r is not None:
                ratios.append({"point": key, "vs": other, "ratio": r, "metric": metric})
        r = ratio(med, "txthrift-unframed", "txthrift", key, metric)
        if r is not None:
            ratios.append({"point": key, "vs": "txthrift (framed), unframed load",
                           "ratio": r, "metric": metric})
        r = ratio(med, "txthrift-header", "txthrift", key, metric)
        if r is not None:
            ratios.append({"point": key, "vs": "txthrift (framed), THeader load",
                           "ratio": r, "metric": metric})
        for observed in OBSERVED:
            r = ratio(med, observed, "txthrift", key, metric)
            if r is not None:
                ratios.append({"point": key, "vs": f"txthrift (framed), {observed[9:]} on",
                               "ratio": r, "metric": metric})

    for conns, depth in ((4, 16), (32, 8)):
        key = pointKey((SMALL, conns, depth))
        goal(f"small {key}: txthrift >= 2.5x Apache TTwisted",
             ratio(med, "txthrift", "apache-twisted", key), ">=", 2.5, key=key)
        goal(f"small {key}: txthrift >= 1.2x thriftpy2 threaded",
             ratio(med, "txthrift", "thriftpy2-threaded", key), ">=", 1.2, key=key)
        goal(f"small {key}: txthrift >= 0.5x raw Twisted",
             ratio(med, "txthrift", "raw-twisted", key), ">=", 0.5, key=key)
        goal(f"small {key}: auto within 10% of fixed (auto/fixed >= 0.90)",
             ratio(med, "txthrift", "txthrift-fixed", key), ">=", 0.90, key=key)
    key = pointKey((SMALL, 1, 1))
    goal(f"small {key}: txthrift >= 0.85x raw Twisted",
         ratio(med, "txthrift", "raw-twisted", key), ">=", 0.85, key=key)
    for point in POINTS:
        if point[0] == LARGE:
            key = pointKey(point)
            goal(f"{key}: txthrift >= 0.70x raw Twisted MB/s",
                 ratio(med, "txthrift", "raw-twisted", key, "mb_per_s"), ">=", 0.70, key=key)
    protocolGoals(med, ratios, goal)
    if client is not None:
        goal("client: txthrift pipelined >= 3x Apache sync client", client.get("ratio"), ">=", 3.0)
        goal(f"client: txthrift pipelined >= 0.8x the C load generator, {pointKey(CLIENT_POINT)} "
             "against raw-twisted", client.get("vs_loadgen"), ">=", 0.8)
    if intake is not None and "messages" in intake:
        for kind, m in intake["messages"].items():
            goal(f"intake 16 MiB {kind}: unframed <= 2x framed", m["buffered_over_framed"],
                 "<=", 2.0)
    if memory is not None:
        goal("memory: RSS per idle connection (used once) <= 40 KiB",
             memory.get("per_conn_used_kib"), "<=", 40.0, " KiB")
        goal("memory: RSS per idle connection (never used) <= 40 KiB",
             memory.get("per_conn_new_kib"), "<=", 40.0, " KiB")
    if workers is not None:
        goal(f"workers: --workers 2 >= 1.5x --workers 1 ({workers.get('point')})",
             workers.get("ratio"), ">=", 1.5)
    if http is not None:
        goal(f"http: txthrift >= 3x Apache's THttpServer ({pointKey(HTTP_POINT)} against "
             f"{pointKey(HTTP_ONE_EACH)})", http.get("vs_apache"), ">=", 3.0)
        goal(f"http: txthrift >= 0.6x a bare twisted.web resource ({pointKey(HTTP_POINT)})",
             http.get("vs_raw_web"), ">=", 0.6)
    return ratios, goals


def cpuPerCall(med: dict, protocol: str, key: str) -> float | None:
    """
    Median server CPU µs per call of txthrift (auto) at KEY with PROTOCOL.
    """
    return med.get(PROTOCOL_TARGETS[protocol], {}).get(key, {}).get("server_us_per_call")


def protocolGoals(med: dict, ratios: list[dict], goal: Any) -> None:
    """
    Issue 12's goals: CPU per call of compact and JSON against binary,
    1 MiB against the faster of raw Twisted and thriftpy2, unframed against
    framed; issue 16's: THeader against framed; issue 17's: metrics and the
    access log on against off.
    """
    for point in CPU_POINTS:
        key = pointKey(point)
        binary = cpuPerCall(med, "binary", key)
        for protocol in ("compact", "json"):
            other = cpuPerCall(med, protocol, key)
            if binary and other is not None:
                ratios.append({"point": key, "vs": f"server CPU per call, {protocol} / binary",
                               "ratio": other / binary, "metric": "server_us_per_call"})
    for protocol, point, most in (("compact", (SMALL, 4, 16), 1.3), ("json", (SMALL, 4, 16), 3.0),
                                  ("json", (MEDIUM, 4, 16), 4.0)):
        key = pointKey(point)
        binary, other = cpuPerCall(med, "binary", key), cpuPerCall(med, protocol, key)
        goal(f"server CPU per call, {key}: {protocol} / binary <= {most:g}x",
             other / binary if binary and other is not None else None, "<=", most, key=key,
             targets=("txthrift", PROTOCOL_TARGETS[protocol]))
    key = pointKey((LARGE, 4, 2))
    rivals = {name: med.get(name, {}).get(key, {}).get("mb_per_s")
              for name in ("raw-twisted", "thriftpy2-threaded")}
    rivals = {name: v for name, v in rivals.items() if v}
    fastest = max(rivals, key=lambda name: rivals[name]) if rivals else None
    goal(f"{key}: txthrift >= 1.0x max(raw Twisted, thriftpy2 threaded) MB/s"
         + (f" (here {fastest})" if fastest else ""),
         ratio(med, "txthrift", fastest, key, "mb_per_s") if fastest else None, ">=", 1.0, key=key)
    key = pointKey((SMALL, 4, 16))
    goal(f"small {key}: txthrift unframed / framed >= 0.90",
         ratio(med, "txthrift-unframed", "txthrift", key), ">=", 0.90, key=key,
         targets=("txthrift", "txthrift-unframed"))
    goal(f"small {key}: THeader binary >= 0.85x framed binary calls/s",
         ratio(med, "txthrift-header", "txthrift", key), ">=", 0.85, key=key,
         targets=("txthrift", "txthrift-header"))
    for observed, least in (("txthrift-metrics", 0.90), ("txthrift-accesslog", 0.75)):
        goal(f"small {key}: {observed[9:]} on >= {least:.2f}x off, calls/s",
             ratio(med, observed, "txthrift", key), ">=", least, key=key,
             targets=("txthrift", observed))


def machineInfo() -> dict[str, Any]:
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions: dict[str, str] = {"python": platform.python_version()}
    for dist in ("twisted", "thrift", "thriftpy2", "txthrift", "matplotlib", "py-spy"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    try:
        import thrift.protocol.fastbinary  # noqa: F401

        versions["thrift fastbinary"] = "yes"
    except ImportError:
        versions["thrift fastbinary"] = "no"
    try:
        import txthrift._speedups  # noqa: F401

        versions["txthrift speedups"] = "yes"
    except ImportError:
        versions["txthrift speedups"] = "no"
    for name, argv in (("thrift compiler", ["thrift", "-version"]), ("cc", ["cc", "--version"])):
        try:
            versions[name] = subprocess.run(argv, capture_output=True, text=True, check=False,
                                            timeout=10).stdout.splitlines()[0].strip()
        except (OSError, IndexError, subprocess.TimeoutExpired):
            versions[name] = "?"
    git = {}
    try:
        git["commit"] = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                                       capture_output=True, text=True, check=False, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--", "txthrift"],
                               capture_output=True, text=True, check=False, timeout=10).stdout.strip()
        git["txthrift_dirty"] = bool(dirty)
    except (OSError, subprocess.TimeoutExpired):
        pass
    return {"nproc": os.cpu_count(), "cpu_model": model, "kernel": platform.release(),
            "platform": platform.platform(), "versions": versions, "git": git}


def fmtRate(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:,.0f}" if v >= 100 else f"{v:,.1f}"


def printReport(report: dict[str, Any]) -> None:
    med = report["medians"]
    targets = [t for t in TARGETS if t.name in med]
    print("\n" + "=" * 100)
    m = report["machine"]
    print(f"txthrift benchmarks  {report['date']}  {m['nproc']} CPUs ({m['cpu_model']})  "
          f"load avg {report['loadavg_start'][0]:.2f} -> {report['loadavg_end'][0]:.2f}")
    v = m["versions"]
    print(f"python {v['python']}  twisted {v['twisted']}  thrift {v['thrift']} (fastbinary "
          f"{v['thrift fastbinary']})  thriftpy2 {v['thriftpy2']}  txthrift {v['txthrift']} "
          f"({m['git'].get('commit', '?')}{'+dirty' if m['git'].get('txthrift_dirty') else ''}, "
          f"speedups {v.get('txthrift speedups', '?')})")
    c = report["config"]
    print(f"mode {c['mode']}: {c['reps']} rep(s) x ({c['warmup']:g} s warm-up + "
          f"{c['duration']:g} s measured), medians; txthrift server: {report['txthrift_server']}")
    for note in report["notes"]:
        print("note:", note)

    if med:
        points = [p for p in POINTS if any(pointKey(p) in med[t.name] for t in targets)]
        for point in points:
            key = pointKey(point)
            print(f"\n-- {key}")
            print(f"   {'server':<22}{'calls/s':>11}{'MB/s':>9}{'p50 µs':>10}{'p99 µs':>10}"
                  f"{'x raw':>7}{'srv cpu':>8}{'µs/call':>9}{'flt/call':>9}{'lg cpu':>7}"
                  f"{'noise':>6}{'fair':>6}"
                  f"{'errors':>8}{'anchor':>11}")
            raw = med.get("raw-twisted", {}).get(key, {}).get("calls_per_s")
            for t in targets:
                e = med[t.name].get(key)
                if e is None:
                    continue
                if "calls_per_s" not in e:
                    print(f"   {t.name:<22} FAILED: {e.get('failed')}")
                    continue
                anchor = ANCHORS.get(t.name, {}).get(point[1:]) if point[0] == SMALL else None
                print(f"   {t.name:<22}{fmtRate(e['calls_per_s']):>11}{e['mb_per_s']:>9.1f}"
                      f"{e['p50_us']:>10,.0f}{e['p99_us']:>10,.0f}"
                      f"{(e['calls_per_s'] / raw if raw else 0):>7.2f}"
                      f"{e.get('server_cpu_util', 0):>8.0%}"
                      f"{fmtRate(e.get('server_us_per_call')):>9}"
                      f"{fmtRate(e.get('server_faults_per_call')):>9}{e.get('cpu_util', 0):>7.0%}"
                      f"{e.get('foreign_cpu', 0):>6.0%}"
                      f"{e.get('fairness', 0):>6.2f}{e['errors']:>8}{anchor or '':>11}")

    printCpuTable(med)
    client = report.get("client")
    if client:
        print("\n-- client (against raw-twisted, framed binary)")
        print(f"   txthrift pipelined, 100 in flight: {fmtRate(client.get('txthrift'))} calls/s"
              f" (errors {client.get('txthrift_errors')})")
        print(f"   Apache sync client, one at a time: {fmtRate(client.get('apache-sync'))} calls/s"
              f" (errors {client.get('apache-sync_errors')})")
        if "loadgen" in client:
            print(f"   C load generator, {client.get('loadgen_point')}: "
                  f"{fmtRate(client.get('loadgen'))} calls/s (the raw server's rate at that shape;"
                  f" txthrift {client.get('vs_loadgen') or 0:.2f}x)")
        floor = client.get("floor")
        if floor:
            print(f"   CPU per call in memory, no server: a Deferred made and fired "
                  f"{floor['deferred_us']:.2f} us + C encode and decode {floor['coding_us']:.2f} us"
                  f" = {floor['floor_us']:.2f} us, the floor of any Deferred-per-call client "
                  f"(<= {1e6 / floor['floor_us']:,.0f} calls/s); txthrift's client path "
                  f"{floor['txthrift_us']:.2f} us")
    http = report.get("http")
    if http:
        print("\n-- Thrift over HTTP (13 B getData, binary, one message per POST)")
        for kind in HTTP_SERVERS:
            print(f"   {kind:<14} {http['points'][kind]:<14} {fmtRate(http.get(kind)):>9} calls/s"
                  f"  server {fmtRate(http.get(kind + '_us_per_call'))} us/call")
    intake = report.get("intake")
    if intake and "messages" in intake:
        print("\n-- intake of one 16 MiB message in 4 KiB dataReceived calls")
        for kind, e in intake["messages"].items():
            print(f"   {kind:<7} framed {e['framed_ms']:8.1f} ms ({e['framed_mb_per_s']:6.0f} MB/s)"
                  f"   unframed {e['buffered_ms']:8.1f} ms ({e['buffered_mb_per_s']:6.0f} MB/s)")
    memory = report.get("memory")
    if memory and "per_conn_used_kib" in memory:
        print(f"\n-- memory: {memory['connections']:,} idle connections to txthrift: "
              f"{memory['per_conn_new_kib']:.1f} KiB/conn never used, "
              f"{memory['per_conn_used_kib']:.1f} KiB/conn after one call "
              f"(RSS {memory['rss_before'] / MiB:.1f} -> {memory['rss_idle_used'] / MiB:.1f} MiB)")
    workers = report.get("workers")
    if workers and "ratio" in workers:
        print(f"\n-- workers ({workers['point']}, nothing pinned): --workers 1 "
              f"{workers['workers_1']:,.0f} calls/s, --workers 2 {workers['workers_2']:,.0f} "
              f"calls/s: {workers['ratio']:.2f}x")

    if report["ratios"]:
        print("\n-- ratios: txthrift (auto) vs ...")
        byPoint: dict[str, list[str]] = {}
        for r in report["ratios"]:
            byPoint.setdefault(r["point"], []).append(f"{r['vs']} {r['ratio']:.2f}x")
        for key, items in byPoint.items():
            print(f"   {key:<18} " + ";  ".join(items))

    print("\n-- goals")
    for g in report["goals"]:
        mark = {True: "MET    ", False: "NOT MET", None: "n/a    "}[g["met"]]
        value = "-" if g["value"] is None else f"{g['value']:.2f}{g['unit']}"
        print(f"   [{mark}] {g['goal']}: {value} (need {g['op']} {g['threshold']:g}{g['unit']})")
    print("=" * 100)


def cpuTable(med: dict) -> list[tuple[str, dict[str, float | None]]]:
    """
    Server CPU µs per call of txthrift (auto) by protocol, at each CPU_POINTS
    point measured.
    """
    rows = []
    for point in CPU_POINTS:
        key = pointKey(point)
        row = {protocol: cpuPerCall(med, protocol, key) for protocol in PROTOCOL_TARGETS}
        if any(v is not None for v in row.values()):
            rows.append((key, row))
    return rows


def printCpuTable(med: dict) -> None:
    rows = cpuTable(med)
    if not rows:
        return
    print("\n-- server CPU per call, txthrift (auto), framed: µs of server CPU over the measured"
          " window / calls")
    print(f"   {'point':<18}{'binary':>10}{'compact':>10}{'json':>10}{'compact/bin':>13}"
          f"{'json/bin':>10}")
    for key, row in rows:
        binary = row["binary"]
        over = {}
        for protocol in ("compact", "json"):
            value = row[protocol]
            over[protocol] = f"{value / binary:.2f}x" if value is not None and binary else "-"
        print(f"   {key:<18}{fmtRate(binary):>10}{fmtRate(row['compact']):>10}"
              f"{fmtRate(row['json']):>10}{over['compact']:>13}{over['json']:>10}")


#: The servers a user chooses between, in the chart: name, label, colour
#: (one hue per family: txthrift blue, Apache red, thriftpy2 green), hatch.
CHART_SERVERS = [
    ("txthrift", "txthrift (twistd thrift)", "#1f5fbf", ""),
    ("txthrift-unframed", "txthrift, unframed load", "#8fb3e8", ""),
    ("txthrift-header", "txthrift, THeader load", "#5d8fd8", ".."),
    ("apache-twisted-accel", "Apache TTwisted (C coder)", "#c0392b", ""),
    ("apache-threadpool", "Apache TThreadPoolServer", "#e67e73", ""),
    ("apache-nonblocking", "Apache TNonblockingServer", "#f5b7b1", ""),
    ("thriftpy2-threaded", "thriftpy2 threaded", "#1e8449", ""),
    ("thriftpy2-aio", "thriftpy2 asyncio", "#82e0aa", ""),
    ("raw-twisted", "raw Twisted framing (no Thrift)", "#bbbbbb", "//"),
]


def chart(report: dict[str, Any], path: str) -> str | None:
    """
    A user's chart: each payload's rate for the servers a user would choose
    between (raw Twisted, which decodes nothing, as the ceiling), and what a
    call costs txthrift's server by protocol.  Goals stay in the text report.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib not installed: no chart"
    med = report["medians"]
    servers = [entry for entry in CHART_SERVERS if entry[0] in med]
    fig = plt.figure(figsize=(16, 9), layout="constrained")
    grid = fig.add_gridspec(2, 3, height_ratios=[1.3, 1])
    panels = [(SMALL, "calls_per_s", "calls/s"), (MEDIUM, "calls_per_s", "calls/s"),
              (LARGE, "mb_per_s", "MB/s (requests + replies)")]
    for i, (payload, metric, unit) in enumerate(panels):
        ax = fig.add_subplot(grid[0, i])
        points = [p for p in POINTS if p[0] == payload]
        width = 0.8 / max(1, len(servers))
        for j, (name, label, colour, hatch) in enumerate(servers):
            values = [med[name].get(pointKey(p), {}).get(metric, 0) for p in points]
            xs = [k + j * width for k in range(len(points))]
            ax.bar(xs, values, width, label=label, color=colour, hatch=hatch,
                   edgecolor="white" if not hatch else "#777777", linewidth=0.5)
        ax.set_xticks([k + 0.4 - width / 2 for k in range(len(points))])
        ax.set_xticklabels([f"{p[1]} conn. x {p[2]} in flight" for p in points], fontsize=8)
        ax.set_title(f"getData, {sizeName(payload)} string: {unit.split(' ')[0]}")
        ax.set_ylabel(unit)
        ax.grid(axis="y", alpha=0.3)
        ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))
        if i == 0:
            ax.legend(fontsize=8, loc="upper left")
    rows = cpuTable(med)
    ax = fig.add_subplot(grid[1, :2])
    if rows:
        shades = {"binary": "#1f5fbf", "compact": "#5d8fd8", "json": "#a9c4ee"}
        width = 0.8 / len(PROTOCOL_TARGETS)
        for j, protocol in enumerate(PROTOCOL_TARGETS):
            values = [row[protocol] or 0 for _, row in rows]
            xs = [k + j * width for k in range(len(rows))]
            bars = ax.bar(xs, values, width, label=protocol, color=shades[protocol])
            ax.bar_label(bars, labels=[fmtRate(v) if v else "" for v in values], fontsize=7)
        ax.set_yscale("log")
        ax.set_xticks([k + 0.4 - width / 2 for k in range(len(rows))])
        ax.set_xticklabels([key for key, _ in rows], fontsize=8)
        ax.set_ylabel("server CPU µs per call (log)")
        ax.set_title("txthrift's server: CPU per call by protocol (framed; lower is better)")
        ax.legend(fontsize=8, loc="upper left")
        ax.grid(axis="y", alpha=0.3)
    else:
        ax.axis("off")
    ax = fig.add_subplot(grid[1, 2])
    ax.axis("off")
    ax.text(0, 1, "\n".join(chartNotes(report)), va="top", family="monospace", fontsize=8)
    fig.suptitle("HelloService.getData: each server on one core, the C load generator on the"
                 " other (framed strict binary unless noted; medians)")
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return None


def chartNotes(report: dict[str, Any]) -> list[str]:
    """
    The chart's text: where and how it was measured, and the client.
    """
    m = report["machine"]
    v = m["versions"]
    dirty = "+dirty" if m["git"].get("txthrift_dirty") else ""
    config = report["config"]
    text = [f"{report['date']}", f"{m['nproc']} CPUs: {m['cpu_model']}",
            f"python {v['python']}, twisted {v['twisted']}",
            f"thrift {v['thrift']}, thriftpy2 {v['thriftpy2']}",
            f"txthrift {v['txthrift']} ({m['git'].get('commit', '?')}{dirty})",
            (f"{config['reps']} repetition(s) of {config['warmup']:g} s warm-up"
             f" + {config['duration']:g} s"),
            f"load avg {report['loadavg_start'][0]:.2f} -> {report['loadavg_end'][0]:.2f}", ""]
    client = report.get("client")
    if client and client.get("txthrift"):
        text.append("client, one connection, against raw Twisted:")
        text.append(f"  txthrift, 100 calls in flight {client['txthrift']:>9,.0f}/s")
        text.append(f"  Apache's blocking client      {client.get('apache-sync') or 0:>9,.0f}/s")
        if client.get("loadgen"):
            text.append(f"  C load generator, 100 in flight {client['loadgen']:>7,.0f}/s")
    memory = report.get("memory")
    if memory and "per_conn_used_kib" in memory:
        text.append(f"memory: {memory['per_conn_used_kib']:.1f} KiB per idle connection")
    goals = report.get("goals") or []
    if goals:
        met = sum(1 for g in goals if g["met"])
        text.append(f"goals met: {met} of {len(goals)} (see the text report)")
    return text


# --------------------------------------------------------------------------

def timingOptions(p: argparse.ArgumentParser) -> None:
    """
    --quick, --reps, --warmup, --duration: the harness's and compare.py's.
    """
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 1 repetition, 0.3 s warm-up + 0.8 s per measurement")
    p.add_argument("--reps", type=int, default=None, help="repetitions (default 3; quick 1)")
    p.add_argument("--warmup", type=float, default=None, help="seconds (default 1; quick 0.3)")
    p.add_argument("--duration", type=float, default=None,
                   help="measured seconds (default 2.25; quick 0.8)")


def parseArgs(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="txthrift benchmark harness",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    timingOptions(p)
    p.add_argument("--only", default=None,
                   help="comma-separated names or globs of targets "
                        f"({', '.join(t.name for t in TARGETS)}), sections "
                        f"({', '.join(SECTIONS)}) and groups of targets ("
                        + ", ".join(f"{g} = {'+'.join(ts)}" for g, ts in ONLY_GROUPS.items())
                        + "); default: everything")
    p.add_argument("--payloads", default="13,4096,1048576",
                   help="comma-separated payload sizes to run, of 13, 4096, 1048576")
    p.add_argument("--shapes", default=None,
                   help="comma-separated CxD (connections x in flight each) to run, of "
                        + ", ".join(sorted({f"{c}x{d}" for _, c, d in POINTS}))
                        + "; default: every shape")
    p.add_argument("--no-profile", action="store_true", help="skip the py-spy profile")
    p.add_argument("--profile-seconds", type=int, default=None, help="default 5; quick 2")
    p.add_argument("--idle-conns", type=int, default=2000)
    p.add_argument("--pool-threads", type=int, default=64,
                   help="TThreadPoolServer workers (Apache's default 10 starves C=32)")
    p.add_argument("--server-core", type=int, default=1)
    p.add_argument("--load-core", type=int, default=0)
    p.add_argument("--no-pin", action="store_true", help="do not use taskset")
    p.add_argument("--no-twistd", action="store_true",
                   help="serve txthrift with the txthrift.serve() script, not twistd thrift")
    p.add_argument("--settle", type=float, default=0.1, help="pause between measurements")
    p.add_argument("--max-noise", type=float, default=0.10,
                   help="measure again when more than this share of the server core went to "
                        "anything but the server (other processes, interrupts, steal)")
    p.add_argument("--retries", type=int, default=2,
                   help="extra attempts for a disturbed measurement; the cleanest is kept")
    p.add_argument("--start-timeout", type=float, default=30.0)
    p.add_argument("--output", default=None,
                   help="the JSON report (its chart goes beside it); default results/latest.json,"
                        " or results/partial.json with --only or --quick, so that a partial run"
                        " leaves the last full run's files alone")
    args = p.parse_args(argv)
    if args.output is None:
        partial = args.only or args.quick
        args.output = os.path.join(RESULTS, "partial.json" if partial else "latest.json")
    quick = args.quick
    if args.reps is None:
        args.reps = 1 if quick else 3
    if args.warmup is None:
        args.warmup = 0.3 if quick else 1.0
    if args.duration is None:
        args.duration = 0.8 if quick else 2.25
    if args.profile_seconds is None:
        args.profile_seconds = 2 if quick else 5
    args.payloads = {int(x) for x in args.payloads.split(",") if x.strip()}
    if not args.payloads <= {SMALL, MEDIUM, LARGE}:
        p.error("--payloads takes 13, 4096 and/or 1048576")
    shapes = {(c, d) for _, c, d in POINTS}
    if args.shapes is not None:
        try:
            args.shapes = {tuple(int(n) for n in x.strip().split("x")) for x in
                           args.shapes.split(",") if x.strip()}
        except ValueError:
            args.shapes = None
        if not args.shapes or not args.shapes <= shapes:
            p.error("--shapes takes CxD of " + ", ".join(f"{c}x{d}" for c, d in sorted(shapes)))
    else:
        args.shapes = shapes
    if not selectedPoints(args):
        p.error("--payloads and --shapes leave no point to measure")
    return args


def selectedPoints(args: argparse.Namespace) -> list[tuple[int, int, int]]:
    """
    The server points --payloads and --shapes leave.
    """
    return [p for p in POINTS if p[0] in args.payloads and p[1:] in args.shapes]


def selected(args: argparse.Namespace) -> tuple[list[Target], set[str]]:
    if not args.only:
        return list(TARGETS), set(SECTIONS)
    patterns = [name for x in args.only.split(",") if x.strip()
                for name in ONLY_GROUPS.get(x.strip(), (x.strip(),))]
    targets = [t for t in TARGETS if any(fnmatch.fnmatchcase(t.name, p) for p in patterns)]
    sections = {s for s in SECTIONS if any(fnmatch.fnmatchcase(s, p) for p in patterns)}
    if not targets and not sections:
        raise SystemExit(f"--only {args.only!r} matches nothing; targets: "
                         f"{', '.join(t.name for t in TARGETS)}; sections: {', '.join(SECTIONS)}"
                         f"; groups: {', '.join(ONLY_GROUPS)}")
    return targets, sections


def main(argv: list[str] | None = None) -> int:
    args = parseArgs(argv)
    targets, sections = selected(args)
    if args.no_profile:
        sections.discard("profile")
    # SIGINT too: a background job may have inherited it ignored.
    signal.signal(signal.SIGINT, _terminated)
    signal.signal(signal.SIGTERM, _terminated)
    signal.signal(signal.SIGHUP, _terminated)
    started = time.monotonic()
    logdir = os.path.join(RESULTS, "logs")
    os.makedirs(logdir, exist_ok=True)
    for old in os.listdir(logdir):
        if old.endswith(".log"):
            os.unlink(os.path.join(logdir, old))
    h = Harness(args, logdir)
    report: dict[str, Any] = {}
    try:
        h.setup()
        report = {
            "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "machine": machineInfo(),
            "loadavg_start": os.getloadavg(),
            "config": {"mode": "quick" if args.quick else "full", "reps": args.reps,
                       "warmup": args.warmup, "duration": args.duration,
                       "points": [pointKey(p) for p in selectedPoints(args)],
                       "pinning": {"server": h.pinServer, "load": h.pinLoad},
                       "only": args.only, "pool_threads": args.pool_threads},
            "txthrift_server": h.twistdNote,
            "notes": h.notes,
            "targets": {t.name: {"label": t.label, "server": t.server, "framed": t.framed,
                                 "header": t.header} for t in targets},
        }
        print(f"txthrift server: {h.twistdNote}", flush=True)
        measurements, serverInfo = runServerBench(h, targets) if targets else ([], {})
        report["servers"] = serverInfo
        report["measurements"] = measurements
        report["medians"] = medians(measurements)
        client = runClientBench(h) if "client" in sections else None
        http = runHttpBench(h) if "http" in sections else None
        intake = runIntake(h) if "intake" in sections else None
        memory = runMemory(h) if "memory" in sections else None
        workers = runWorkers(h) if "workers" in sections else None
        profile = runProfile(h) if "profile" in sections else None
        for name, value in (("client", client), ("http", http), ("intake", intake),
                            ("memory", memory), ("workers", workers), ("profile", profile)):
            if value is not None:
                report[name] = value
        report["ratios"], report["goals"] = evaluate(report["medians"], client, intake, memory,
                                                     workers, http)
        report["loadavg_end"] = os.getloadavg()
        report["elapsed_s"] = time.monotonic() - started
    except KeyboardInterrupt as e:
        print(f"\ninterrupted ({e or 'Ctrl-C'}): stopping every server", file=sys.stderr)
        return 130
    finally:
        PROCS.stopAll()

    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(report, f, indent=1, default=str)
    printReport(report)
    png = os.path.splitext(args.output)[0] + ".png"
    problem = chart(report, png)
    print(f"results: {os.path.relpath(args.output)}" + (f"  (chart: {problem})" if problem
                                                        else f", {os.path.relpath(png)}"))
    print(f"elapsed {report['elapsed_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
