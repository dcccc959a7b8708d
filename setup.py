"""
The parts of the build setup.cfg cannot say: the optional C extension, and
the long description an index shows.

Without a C compiler the build goes on without the extension, and txthrift
uses the same loop in Python (slower for containers of many small elements,
nothing else).

The long description is README.md without its blocks marked
C{<!-- repository-only -->} ... C{<!-- /repository-only -->}: the commands
that set up this repository, the module table, the benchmark chart (an image
a relative link would break on an index) and the notes for contributors.
One text, so the index never tells another story than the README.
"""

import re
from pathlib import Path

from setuptools import Extension, setup

_REPOSITORY_ONLY = re.compile(r"<!-- repository-only\b.*?-->.*?<!-- /repository-only -->\n?",
                              re.DOTALL)


def longDescription() -> str:
    """
    README.md as an index shows it.

    @raise ValueError: for a marker left unpaired, which would show the
        index a block meant for the repository.
    """
    readme = (Path(__file__).parent / "README.md").read_text(encoding="utf-8")
    text = _REPOSITORY_ONLY.sub("", readme)
    if "repository-only" in text:
        raise ValueError("README.md: a <!-- repository-only --> block is not closed"
                         " by <!-- /repository-only -->")
    return re.sub(r"\n{3,}", "\n\n", text)


setup(
    long_description=longDescription(),
    long_description_content_type="text/markdown",
    ext_modules=[Extension("txthrift._speedups", ["txthrift/_speedups.c"], optional=True)],
)
