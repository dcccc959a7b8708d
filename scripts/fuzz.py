#!/usr/bin/env python3
"""
A longer fuzz session of txthrift's message intake, on demand.

Feeds random bytes and mutated valid messages (bit flips, truncations,
insertions) of every transport and protocol to a server connection and to
a client connection, checking after each the invariants of
tests/test_hardening.py: nothing escapes, a server connection answers a
following valid call or is closed (or is closed by its idle timeout while
waiting for bytes it was promised), every call the input holds whole gets
its reply whichever of those it was, only valid Thrift messages are sent,
and no client call is left pending once its connection is gone.

    python scripts/fuzz.py --seconds 60 [--seed N]

Exits 1 (printing the input, as hex, and the error) at the first failure.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import traceback
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests._hardening import (
    COMBOS,
    checkClientIntake,
    checkServerIntake,
    framed,
    mutate,
    reply,
    validMessage,
)


def edits(rng: random.Random) -> list[tuple[int, int, bytes]]:
    return [(rng.randrange(3), rng.randrange(1 << 16), rng.randbytes(rng.randint(1, 8)))
            for _ in range(rng.randint(1, 4))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="how long to fuzz")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: time)")
    options = parser.parse_args()
    seed = options.seed if options.seed is not None else time.time_ns() % (1 << 32)
    rng = random.Random(seed)
    counts: Counter[str] = Counter()
    deadline = time.monotonic() + options.seconds
    while time.monotonic() < deadline:
        transport, protocol = rng.choice(COMBOS)
        kind = rng.randrange(4)
        if kind == 0:
            data = rng.randbytes(rng.randint(0, 300))
        elif kind == 1:
            data = mutate(validMessage(transport, protocol, rng.randrange(20),
                                       rng.randint(1, 1 << 20)), edits(rng))
        else:
            message = reply(protocol, "getData", rng.randint(1, 3), "fine")
            data = framed(message) if transport == "framed" else message
            data = rng.randbytes(rng.randint(0, 300)) if kind == 2 else mutate(data, edits(rng))
        side = "server" if kind < 2 else "client"
        try:
            if side == "server":
                counts[f"server {checkServerIntake(data, transport, protocol)}"] += 1
            else:
                checkClientIntake(data, transport, protocol)
                counts["client"] += 1
        except Exception:
            print(f"FAILED ({side}, {transport}/{protocol}, seed {seed}): {data.hex()}")
            traceback.print_exc()
            return 1
    total = sum(counts.values())
    print(f"seed {seed}: {total} inputs in {options.seconds:g}s, no invariant broken")
    for outcome, count in sorted(counts.items()):
        print(f"  {outcome}: {count}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
