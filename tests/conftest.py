"""
Settings shared by the whole test suite.

Hypothesis: CI runs a fixed, derandomized profile, so a red run is never a
lucky seed and a green one is repeatable; inputs that once broke something
are pinned with C{@example} beside their test.  Runs elsewhere keep
Hypothesis's random search (and its C{.hypothesis/} database of failures),
which is how new failing inputs are found.  The CI profile is chosen when
C{HYPOTHESIS_PROFILE} names it (C{scripts/test.sh}, the CI command, does) or
when C{CI} is set (as CI services do).

Child processes: a test starts them through the C{processes} fixture (or
C{twistd}, its shortcut), which kills every one, with what it started, and
reaps it when the test ends (see L{tests._processes}).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import settings
from twisted.logger import ILogObserver, globalLogPublisher

from tests._processes import Processes, Twistd

settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.register_profile("dev")
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev"))


@pytest.fixture
def logged() -> Iterator[list[dict[str, Any]]]:
    """
    The log events emitted during a test.
    """
    events: list[dict[str, Any]] = []
    observer: ILogObserver = events.append  # type: ignore[assignment]
    globalLogPublisher.addObserver(observer)
    yield events
    globalLogPublisher.removeObserver(observer)


@pytest.fixture
def processes() -> Iterator[Processes]:
    """
    Start child processes; each is killed, with what it started, and
    reaped when the test ends.
    """
    started = Processes()
    try:
        yield started
    finally:
        started.killAll()


@pytest.fixture
def twistd(processes: Processes) -> Callable[..., Twistd]:
    """
    Start C{twistd -n} processes (L{Processes.twistd}), each killed when the
    test ends.
    """
    return processes.twistd
