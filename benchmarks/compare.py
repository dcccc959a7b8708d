#!/usr/bin/env python3
"""
Before/after: txthrift at a base revision against the working tree, in one run.

    python benchmarks/compare.py --base REV [--reps N] [--quick]
    python benchmarks/compare.py --base REV --current REV2   # two revisions

The base (and --current) revision is checked out in a git worktree under the
temporary directory (made once, then reused) and its C extension built in
place with this interpreter.  Each side's servers and clients run with its tree
first on PYTHONPATH; the harness (run.py, servers.py, the load generator,
clientbench.py, intake.py, examples/hello) is this tree's for both, so that only
txthrift differs.  Every point is measured base, current, base, current...
Prints a table of medians and writes results/compare.json.

See benchmarks/README.md, "Before and after".
"""

from __future__ import annotations

import argparse
import copy
import datetime as _dt
import functools
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

import run
from run import (
    LARGE,
    MEDIUM,
    PROCS,
    PY,
    RESULTS,
    ROOT,
    SMALL,
    TARGETS,
    Harness,
    Server,
    clientOnce,
    fmtRate,
    intakeOnce,
    measurementLine,
    medians,
    pointKey,
)

# (payload bytes, connections, in flight per connection)
POINTS = [(SMALL, 4, 16), (SMALL, 1, 1), (MEDIUM, 4, 16), (MEDIUM, 1, 1), (LARGE, 4, 2)]
TARGET_NAMES = ("txthrift", "txthrift-fixed", "txthrift-unframed")  # in run.TARGETS' order
# With --protocols: txthrift (auto) with framed compact and JSON load.
PROTOCOL_TARGETS = {"compact": "txthrift-compact", "json": "txthrift-json"}
WORKTREES = os.path.join(tempfile.gettempdir(), "txthrift-compare")

# Run in each side's environment: which txthrift it imports, and its C extension.
PROBE = """
import txthrift, txthrift._tap
try:
    import txthrift._speedups as s
    speedups = s.__file__
except ImportError:
    speedups = ""
print(txthrift.__file__)
print(speedups)
"""


@dataclass
class Side:
    name: str          # "base" or "current"
    rev: str | None    # None: the working tree
    tree: str
    commit: str = ""
    h: Harness | None = None
    servers: dict[str, Server] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        if self.rev:
            return f"{self.rev} = {self.commit[:12]} (worktree)"
        return f"working tree ({self.commit[:12]}{' + changes' if self.info.get('dirty') else ''})"


def git(*argv: str, cwd: str = ROOT) -> str:
    done = subprocess.run(["git", "-C", cwd, *argv], capture_output=True, text=True,
                          check=False, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(argv)}: {done.stderr.strip()}")
    return done.stdout.strip()


@functools.cache
def worktree(rev: str) -> tuple[str, str, bool]:
    """
    The commit of REV and a worktree of it under WORKTREES, made if need be.
    """
    try:
        sha = git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    except RuntimeError:
        raise RuntimeError(f"no such revision: {rev}") from None
    path = os.path.join(WORKTREES, sha[:12])
    made = not os.path.isdir(path)
    if made:
        os.makedirs(WORKTREES, exist_ok=True)
        print(f"worktree: git worktree add --detach {path} {sha[:12]}", flush=True)
        git("worktree", "add", "--detach", path, sha)
    elif git("rev-parse", "HEAD", cwd=path) != sha:
        raise RuntimeError(f"{path} is not a clean checkout of {sha[:12]}: remove it "
                           f"(git worktree remove --force {path})")
    else:
        print(f"worktree: reusing {path}", flush=True)
    if git("status", "--porcelain", "--untracked-files=no", cwd=path):
        raise RuntimeError(f"{path} has local changes: remove it "
                           f"(git worktree remove --force {path})")
    print(f"building its C extension: {os.path.basename(PY)} setup.py build_ext --inplace -q",
          flush=True)
    done = subprocess.run([PY, "setup.py", "build_ext", "--inplace", "-q"], cwd=path,
                          capture_output=True, text=True, check=False, timeout=600)
    if done.returncode != 0:
        print(f"  ! build failed: {done.stderr.strip()[-300:]}", flush=True)
    return sha, path, made


def inside(path: str, tree: str) -> bool:
    return os.path.realpath(path).startswith(os.path.realpath(tree) + os.sep)


def prepare(side: Side, h0: Harness, notes: list[str]) -> None:
    """
    Give SIDE a harness whose processes import txthrift from its tree, and
    check that they do.
    """
    h = side.h = copy.copy(h0)
    h.logdir = os.path.join(h0.logdir, side.name)
    os.makedirs(h.logdir, exist_ok=True)
    for old in os.listdir(h.logdir):
        if old.endswith(".log"):
            os.unlink(os.path.join(h.logdir, old))
    h.env = dict(h0.env)
    h.env["PYTHONPATH"] = os.pathsep.join([side.tree, h0.env["PYTHONPATH"]])
    h.notes = []
    done = subprocess.run([PY, "-c", PROBE], env=h.env, cwd=h.logdir, capture_output=True,
                          text=True, check=False, timeout=120)
    lines = done.stdout.split("\n")
    if done.returncode != 0 or len(lines) < 2:
        raise RuntimeError(f"{side.name} ({side.label}): txthrift does not import: "
                           f"{done.stderr.strip()[-400:]}")
    module, speedups = lines[0], lines[1]
    print(f"{side.name:<8} {side.label}: txthrift.__file__ = {module}  "
          f"(speedups: {speedups or 'not built'})", flush=True)
    if not inside(module, side.tree) or (speedups and not inside(speedups, side.tree)):
        raise RuntimeError(f"{side.name} imports txthrift from outside {side.tree}")
    side.info.update(rev=side.rev or "working tree", commit=side.commit,
                     txthrift_file=os.path.relpath(module, side.tree),
                     speedups=bool(speedups))
    if not speedups:
        notes.append(f"{side.name}: txthrift._speedups not built (Python scanner)")
    elif side.rev is None:
        source = os.path.join(side.tree, "txthrift", "_speedups.c")
        if os.path.exists(source) and os.path.getmtime(source) > os.path.getmtime(speedups):
            notes.append(f"{side.name}: txthrift/_speedups.c is newer than its build; run "
                         "python setup.py build_ext --inplace")
    h.twistd, h.twistdNote = h.findTwistd()
    side.info["txthrift_server"] = h.twistdNote
    print(f"{'':<8} txthrift server: {h.twistdNote}", flush=True)


def serverImportsOwnTree(side: Side, server: Server) -> bool | None:
    """
    Whether the running server mapped its tree's C extension (None: none mapped).
    """
    assert server.proc is not None
    try:
        with open(f"/proc/{server.proc.pid}/maps") as f:
            paths = {line.split()[-1] for line in f if "_speedups" in line}
    except OSError:
        return None
    return all(inside(p, side.tree) for p in paths) if paths else None


def runServers(sides: list[Side], args: argparse.Namespace) -> list[dict]:
    targets = [t for t in TARGETS if t.name in args.targets]
    kinds = sorted({t.server for t in targets})
    print(f"\n== servers: {', '.join(kinds)} for each side, pinned as run.py pins them",
          flush=True)
    measurements: list[dict] = []
    try:
        for side in sides:
            assert side.h is not None
            for kind in kinds:
                try:
                    side.servers[kind] = side.h.startServer(kind)
                except RuntimeError as e:
                    print(f"  ! {side.name}: {e}", flush=True)
        total = len(POINTS) * len(targets) * args.reps * len(sides)
        count = 0
        for point in POINTS:
            for target in targets:
                for rep in range(args.reps):
                    for side in sides:  # A, B, A, B...
                        count += 1
                        assert side.h is not None
                        server = side.servers.get(target.server)
                        if server is None:
                            result: dict[str, Any] = {"failed": "server did not start"}
                        else:
                            result = side.h.measure(server, target, point)
                            time.sleep(args.settle)
                        result.update(side=side.name, target=target.name, payload=point[0],
                                      conns=point[1], depth=point[2], rep=rep)
                        measurements.append(result)
                        print(f"[{count:>3}/{total}] {pointKey(point):<18} {target.name:<18} "
                              f"{side.name:<7} {measurementLine(result)}", flush=True)
        for side in sides:
            for kind, server in side.servers.items():
                own = serverImportsOwnTree(side, server)
                side.info.setdefault("servers", {})[kind] = {
                    "argv": run.portableArgv(server.argv), "speedups_from_own_tree": own,
                    "restarts": server.restarts}
                if own is False:
                    raise RuntimeError(f"{side.name} {kind} server runs another tree's txthrift")
    finally:
        for side in sides:
            for server in side.servers.values():
                if server.proc is not None:
                    PROCS.stop(server.proc)
    return measurements


def runClient(h0: Harness, sides: list[Side], args: argparse.Namespace) -> dict[str, list]:
    print("\n== client: clientbench.py txthrift (pipelined, 100 in flight) against raw-twisted",
          flush=True)
    runs: dict[str, list] = {side.name: [] for side in sides}
    server = h0.startServer("raw-twisted")
    try:
        for rep in range(args.reps):
            for side in sides:
                assert side.h is not None
                if not h0.ensureAlive(server):
                    r: dict[str, Any] = {"failed": "raw-twisted is down"}
                else:
                    r = clientOnce(side.h, "txthrift", server.port)
                if r.get("failure") and not r.get("calls"):
                    r["failed"] = r["failure"]
                runs[side.name].append(r)
                print(f"  rep {rep + 1} {side.name:<7} "
                      f"{r.get('failed') or format(r['calls_per_s'], ',.0f') + ' calls/s'}"
                      f"{'' if r.get('failed') else '  errors ' + str(r['errors'])}", flush=True)
    finally:
        if server.proc is not None:
            PROCS.stop(server.proc)
    return runs


def runIntakes(sides: list[Side], args: argparse.Namespace) -> dict[str, list]:
    print("\n== intake: intake.py, one 16 MiB message in 4 KiB pieces", flush=True)
    runs: dict[str, list] = {side.name: [] for side in sides}
    for rep in range(args.reps):
        for side in sides:
            assert side.h is not None
            out = intakeOnce(side.h, 1)
            runs[side.name].append(out)
            shown = out.get("failed") or "  ".join(
                f"{kind} {m['framed_mb_per_s']:,.0f}/{m['buffered_mb_per_s']:,.0f} MB/s"
                for kind, m in out["messages"].items())
            print(f"  rep {rep + 1} {side.name:<7} {shown}  (framed/unframed)", flush=True)
    return runs


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def tableRows(sides: list[Side], measurements: list[dict], client: dict[str, list] | None,
              intake: dict[str, list] | None, tolerance: float,
              maxNoise: float, targets: tuple[str, ...] = TARGET_NAMES) -> list[dict[str, Any]]:
    names = [side.name for side in sides]
    rows: list[dict[str, Any]] = []

    def row(point: str, unit: str, values: dict[str, float | None], errors: int = 0,
            failed: str = "", noisy: bool = False, lowerIsBetter: bool = False) -> None:
        base, current = values.get(names[0]), values.get(names[1])
        ratio = current / base if base and current is not None else None
        mark = failed or ("errors" if errors else "noisy" if noisy else "")
        if ratio is not None and not mark:
            gain = 1 / ratio if lowerIsBetter and ratio else ratio
            mark = ("slower?" if gain < 1 - tolerance else
                    "faster" if gain > 1 + tolerance else "")
        rows.append({"point": point, "unit": unit, "base": base, "current": current,
                     "ratio": ratio, "errors": errors, "mark": mark})

    med = {name: medians([m for m in measurements if m["side"] == name]) for name in names}
    for point in POINTS:
        key = pointKey(point)
        for target in targets:
            entries = {name: med[name].get(target, {}).get(key) for name in names}
            if not any(entries.values()):
                continue
            failed = "; ".join(f"{name} failed" for name, e in entries.items()
                               if e is None or "calls_per_s" not in e)
            row(f"{target} {key}", "calls/s",
                {name: e.get("calls_per_s") if e else None for name, e in entries.items()},
                sum(e.get("errors", 0) for e in entries.values() if e), failed,
                any(e.get("foreign_cpu", 0) > maxNoise for e in entries.values() if e))
            # CPU time is hardly touched by other processes: the figure to
            # trust on a busy machine.
            row(f"{target} {key}", "srv µs/call",
                {name: e.get("server_us_per_call") if e else None for name, e in entries.items()},
                sum(e.get("errors", 0) for e in entries.values() if e), failed,
                lowerIsBetter=True)
    if client:
        good = {name: [r for r in client[name] if "failed" not in r] for name in names}
        row("client txthrift pipelined", "calls/s",
            {name: median([r["calls_per_s"] for r in runs]) for name, runs in good.items()},
            sum(r.get("errors", 0) for runs in good.values() for r in runs),
            "; ".join(f"{name} failed" for name, runs in good.items() if not runs))
    if intake:
        good = {name: [r for r in intake[name] if "messages" in r] for name in names}
        for kind in ("string", "list"):
            for transport, shown in (("framed", "framed"), ("buffered", "unframed")):
                row(f"intake 16 MiB {kind} {shown}", "MB/s",
                    {name: median([r["messages"][kind][f"{transport}_mb_per_s"] for r in runs])
                     for name, runs in good.items()},
                    failed="; ".join(f"{name} failed" for name, runs in good.items() if not runs))
    return rows


def printTable(sides: list[Side], rows: list[dict[str, Any]]) -> None:
    base, current = sides
    print("\n" + "=" * 96)
    print(f"base    = {base.label}\ncurrent = {current.label}")
    print(f"{'point':<40}{'unit':>12}{'base':>12}{'current':>12}{'current/base':>14}")
    for r in rows:
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}"
        print(f"{r['point']:<40}{r['unit']:>12}{fmtRate(r['base']):>12}"
              f"{fmtRate(r['current']):>12}{ratio:>14}  {r['mark']}".rstrip())
    print("=" * 96)


def parseArgs(argv: list[str] | None) -> tuple[argparse.Namespace, argparse.Namespace]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    p.add_argument("--base", required=True, help="the revision measured as before")
    p.add_argument("--current", default=None,
                   help="a revision measured as after (default: the working tree as it is)")
    run.timingOptions(p)
    p.add_argument("--skip", default="", help="comma-separated sections to leave out: "
                   "servers, client, intake")
    p.add_argument("--protocols", default="binary",
                   help="comma-separated protocols of the load on txthrift (auto): binary, "
                        "compact, json (default binary: compact and JSON add a target each)")
    p.add_argument("--tolerance", type=float, default=0.10,
                   help="mark a row 'slower?' below 1 - this ratio, 'faster' above 1 + it "
                        "(default 0.10)")
    p.add_argument("--remove-worktrees", action="store_true",
                   help="remove the worktrees this run made (default: keep them for next time)")
    p.add_argument("--output", default=os.path.join(RESULTS, "compare.json"),
                   help="the JSON report (default results/compare.json)")
    args = p.parse_args(argv)
    # The harness's own settings, with run.py's defaults.
    forwarded = ["--quick"] if args.quick else []
    for name in ("reps", "warmup", "duration"):
        if getattr(args, name) is not None:
            forwarded += [f"--{name}", str(getattr(args, name))]
    hargs = run.parseArgs(forwarded)
    args.reps = hargs.reps
    args.settle = hargs.settle
    args.skip = {x.strip() for x in args.skip.split(",") if x.strip()}
    if not args.skip <= {"servers", "client", "intake"}:
        p.error("--skip takes servers, client and/or intake")
    protocols = {x.strip() for x in args.protocols.split(",") if x.strip()}
    if not protocols <= {"binary", *PROTOCOL_TARGETS}:
        p.error("--protocols takes binary, compact and/or json")
    args.targets = TARGET_NAMES + tuple(name for protocol, name in PROTOCOL_TARGETS.items()
                                        if protocol in protocols)
    args.skipped = [] if protocols >= {"compact", "json"} else [
        "compact and JSON protocols, unless named by --protocols"]
    return args, hargs


def main(argv: list[str] | None = None) -> int:
    args, hargs = parseArgs(argv)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, run._terminated)
    started = time.monotonic()
    notes: list[str] = []
    made: list[str] = []
    report: dict[str, Any] = {}
    try:
        sides = [Side("base", args.base, ""), Side("current", args.current, ROOT)]
        for side in sides:
            if side.rev is not None:
                side.commit, side.tree, new = worktree(side.rev)
                if new:
                    made.append(side.tree)
            else:
                side.commit = git("rev-parse", "HEAD")
                if git("status", "--porcelain", "--", "txthrift", "twisted"):
                    side.info["dirty"] = True
        h0 = Harness(hargs, os.path.join(RESULTS, "logs", "compare"))
        os.makedirs(h0.logdir, exist_ok=True)
        h0.setup()
        notes += h0.notes
        for side in sides:
            prepare(side, h0, notes)
        if sides[0].info["speedups"] != sides[1].info["speedups"]:
            notes.append("one side has the C extension and the other not: intake 'list' and "
                         "large messages are not comparable")
        report = {
            "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "machine": run.machineInfo(),
            "loadavg_start": os.getloadavg(),
            "config": {"mode": "quick" if args.quick else "full", "reps": args.reps,
                       "warmup": hargs.warmup, "duration": hargs.duration,
                       "points": [pointKey(p) for p in POINTS], "targets": args.targets,
                       "pinning": {"server": h0.pinServer, "load": h0.pinLoad},
                       "order": "base, current alternated per repetition of each point"},
            "skipped": args.skipped + sorted(args.skip),
        }
        for note in args.skipped:
            print(f"skipped: {note}", flush=True)
        measurements = runServers(sides, args) if "servers" not in args.skip else []
        client = runClient(h0, sides, args) if "client" not in args.skip else None
        intake = runIntakes(sides, args) if "intake" not in args.skip else None
        rows = tableRows(sides, measurements, client, intake, args.tolerance, hargs.max_noise,
                         args.targets)
        report.update({side.name: side.info for side in sides})
        report.update(notes=notes, measurements=measurements, client=client, intake=intake,
                      rows=rows, loadavg_end=os.getloadavg(),
                      elapsed_s=time.monotonic() - started)
    except KeyboardInterrupt as e:
        print(f"\ninterrupted ({e or 'Ctrl-C'}): stopping every server", file=sys.stderr)
        return 130
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        print(f"\ncompare: {e}", file=sys.stderr)
        return 1
    finally:
        PROCS.stopAll()
        if args.remove_worktrees:
            for path in made:
                try:
                    git("worktree", "remove", "--force", path)
                except RuntimeError as e:
                    print(f"compare: {e}", file=sys.stderr)

    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(report, f, indent=1, default=str)
    for note in notes:
        print("note:", note)
    printTable(sides, rows)
    start, end = report["loadavg_start"][0], report["loadavg_end"][0]
    print(f"load average {start:.2f} -> {end:.2f}; noisy: more than {hargs.max_noise:.0%} of the "
          "server core went elsewhere in every attempt (see run.py's noise)")
    shown = os.path.relpath(args.output, ROOT)
    print(f"results: {args.output if shown.startswith('..') else shown}; "
          f"elapsed {report['elapsed_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
