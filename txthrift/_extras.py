"""
The optional libraries that txthrift's extras install (C{extras_require} in
setup.cfg), imported only where a feature needing one is used: a missing
one is one error naming the extra to install.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["fromExtra"]


def fromExtra(extra: str, feature: str, *modules: str) -> ModuleType:
    """
    Import C{modules}, which the extra C{txthrift[extra]} installs, and
    return the first.

    @param feature: what needs them, as a message says it ("tracing needs
        opentelemetry-api").
    @raise ImportError: naming the extra, when one is missing.
    """
    try:
        # The package first: a submodule imported before is found even
        # where its package can no longer be.
        imported = [importlib.import_module(name) for name in modules
                    if importlib.import_module(name.partition(".")[0])]
    except ImportError as error:
        raise ImportError(f"{feature}: pip install 'txthrift[{extra}]' ({error})") from error
    return imported[0]
