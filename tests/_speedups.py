"""
txthrift's C speedups, for the tests comparing them with their Python
twins: each, or the test skipped, saying the module was not built.
"""

from __future__ import annotations

import importlib
from typing import Any

import pytest

#: Why a test of the C speedups did not run.
NOT_BUILT = "txthrift._speedups was not built (no C compiler at install time)"


def compiled(name: str) -> Any:
    """
    C{txthrift._speedups}'s C{name}; the test skips where it was not built.
    """
    try:
        return getattr(importlib.import_module("txthrift._speedups"), name)
    except ImportError:
        pytest.skip(NOT_BUILT)
