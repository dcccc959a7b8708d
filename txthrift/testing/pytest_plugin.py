"""
pytest fixtures for testing a txthrift service: C{thriftLoopback} (in
memory, any test) and C{thriftServeAndConnect} (over 127.0.0.1, for
pytest-twisted tests).

pytest loads this plugin by itself wherever txthrift is installed (the
C{pytest11} entry point named C{txthrift}; C{-p no:txthrift} turns it off,
C{-p txthrift} turns it on where plugin autoloading is off).  Loading it
imports txthrift, never the reactor (pytest-twisted installs the one its
C{--reactor} names later); it needs pytest-twisted only for
C{thriftServeAndConnect}, and says so when that is used without it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

__all__ = ["thriftLoopback", "thriftServeAndConnect"]


class _Cleanups:
    """
    The cleanups of one test, run last first when it ends, each waited for.
    """

    def __init__(self) -> None:
        self._cleanups: list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]] = []

    def addCleanup(self, function: Callable[..., Any], /, *args: Any, **kwargs: Any) -> None:
        self._cleanups.append((function, args, kwargs))

    def run(self, wait: Callable[[Any], Any]) -> None:
        """
        Run every cleanup, passing what returns a Deferred to C{wait}; then
        raise the first failure, if any.
        """
        from twisted.internet.defer import Deferred

        errors: list[BaseException] = []
        while self._cleanups:
            function, args, kwargs = self._cleanups.pop()
            try:
                result = function(*args, **kwargs)
                if isinstance(result, Deferred):
                    wait(result)
            except Exception as error:
                errors.append(error)
        if errors:
            raise errors[0]


def _blockon(request: pytest.FixtureRequest, fixture: str) -> Callable[[Any], Any]:
    """
    pytest-twisted's C{blockon}, or a clear failure saying that C{fixture}
    needs pytest-twisted.
    """
    try:
        import pytest_twisted
    except ImportError:
        pytest.fail(f"the {fixture} fixture needs pytest-twisted, which is not installed:"
                    " pip install pytest-twisted", pytrace=False)
    if not request.config.pluginmanager.is_registered(pytest_twisted):
        pytest.fail(f"the {fixture} fixture needs the pytest-twisted plugin, which is"
                    " turned off in this run (-p no:twisted, or plugin autoloading off:"
                    " add -p twisted)", pytrace=False)
    blockon: Callable[[Any], Any] = pytest_twisted.blockon
    return blockon


@pytest.fixture
def thriftLoopback() -> Iterator[Callable[..., tuple[Any, Any]]]:
    """
    L{txthrift.testing.loopback}: C{client, pump = thriftLoopback(handler,
    ...)}; each connection it made is closed when the test ends.
    """
    from txthrift.testing import Pump, loopback

    pumps: list[Pump] = []

    def connected(handler: object, *args: Any, **options: Any) -> tuple[Any, Pump]:
        client, pump = loopback(handler, *args, **options)
        pumps.append(pump)
        return client, pump

    yield connected
    for pump in pumps:
        if pump.connected:
            pump.close()


@pytest.fixture
def thriftServeAndConnect(request: pytest.FixtureRequest) -> Iterator[Callable[..., Any]]:
    """
    L{txthrift.testing.serveAndConnect} for pytest-twisted tests:
    C{client = await thriftServeAndConnect(handler, ...)}; when the test
    ends, the client is closed, the server's end waited for and the port
    closed.
    """
    wait = _blockon(request, "thriftServeAndConnect")
    from txthrift.testing import serveAndConnect

    cleanups = _Cleanups()

    def connected(handler: object, *args: Any, **options: Any) -> Any:
        return serveAndConnect(cleanups, handler, *args, **options)

    yield connected
    cleanups.run(wait)
