#!/usr/bin/env python3
"""
Memory a server holds for half-sent big frames: the figure of
docs/reliability.md ("Partial messages").

Starts C{twistd -n thrift} (the test service, default settings plus any
options given), opens N connections that each send all but the last
64 KiB of one framed 8 MiB request, and prints the server's resident
memory before, once the server has read what it will read, and after the
connections have waited C{--hold} seconds.  Connections the server closed
are counted.

    python scripts/partial_memory.py [--connections 16] [--hold 0] [-- twistd thrift options]
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FRAME = 8 * 1024 * 1024
SHORT_BY = 64 * 1024
WAIT = 30.0


def rss(pid: int) -> int:
    """
    Resident bytes of process C{pid}.
    """
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def serve(options: list[str]) -> tuple[subprocess.Popen[str], int]:
    command = [sys.executable, "-c",
               ("import sys; from twisted.scripts.twistd import run;"
                " sys.argv[0] = 'twistd'; run()"),
               "-n", "--pidfile=", "--logfile=-", "thrift",
               "--handler", "tests._handlers.EchoHandler",
               "--port", "tcp:0:interface=127.0.0.1", *options]
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, cwd=REPO, env=env)
    assert process.stdout is not None
    deadline = time.monotonic() + WAIT
    for line in process.stdout:
        found = re.search(r"Serving .* on .*tcp:127\.0\.0\.1:(\d+)", line)
        if found:
            port = int(found.group(1))
            # Keep draining the log so that the server never blocks on it.
            threading.Thread(target=lambda: [None for _ in process.stdout],  # type: ignore
                             daemon=True).start()
            return process, port
        if time.monotonic() > deadline:
            break
    process.kill()
    raise SystemExit(f"twistd did not start: {' '.join(command)}")


def sendMost(sock: socket.socket) -> None:
    """
    Send all but the last C{SHORT_BY} bytes of one framed binary call (as
    long as the server takes them, or until the socket is closed).
    """
    name = b"getData"
    head = struct.pack(">iI", FRAME, 0x80010001) + struct.pack(">i", len(name)) + name
    body = head + struct.pack(">i", 1) + b"\x0b\x00\x01" + struct.pack(">i", FRAME)
    try:
        sock.sendall(body + b"x" * (FRAME + 4 - SHORT_BY - len(body)))
    except OSError:
        pass  # closed by the server (counted below), or by us at the end


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--hold", type=float, default=0.0,
                        help="seconds to keep the connections open before the last figure")
    parser.add_argument("options", nargs="*", help="more twistd thrift options (after --)")
    args = parser.parse_args()
    process, port = serve(args.options)
    try:
        time.sleep(0.5)
        before = rss(process.pid)
        socks = [socket.create_connection(("127.0.0.1", port))
                 for _ in range(args.connections)]
        threads = [threading.Thread(target=sendMost, args=(sock,), daemon=True)
                   for sock in socks]
        for thread in threads:
            thread.start()
        # Until the server's memory stops growing (bounded).
        last, stable, deadline = rss(process.pid), 0, time.monotonic() + WAIT
        while stable < 10 and time.monotonic() < deadline:
            time.sleep(0.1)
            now = rss(process.pid)
            stable = stable + 1 if now == last else 0
            last = now
        read = rss(process.pid)
        if args.hold:
            time.sleep(args.hold)
        after = rss(process.pid)
        gone = 0
        for sock in socks:
            sock.setblocking(False)
            try:
                gone += sock.recv(1) == b""
            except BlockingIOError:
                pass
            except OSError:
                gone += 1
        mib = 1024 * 1024
        print(f"{args.connections} connections x {(FRAME + 4 - SHORT_BY) / mib:.2f} MiB of an"
              f" 8 MiB frame, options {' '.join(args.options) or '(defaults)'}:")
        print(f"  server RSS before {before / mib:.1f} MiB, once read {read / mib:.1f} MiB"
              f" (+{(read - before) / mib:.1f} MiB), after {args.hold:g}s more"
              f" {after / mib:.1f} MiB (+{(after - before) / mib:.1f} MiB);"
              f" connections closed by the server: {gone}")
        for sock in socks:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # ends the senders still blocked
            except OSError:
                pass  # closed by the server already
            sock.close()
        for thread in threads:
            thread.join(WAIT)
    finally:
        process.kill()
        process.wait(WAIT)


if __name__ == "__main__":
    main()
