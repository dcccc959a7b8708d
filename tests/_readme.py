"""
The README's "Using txthrift in your own project" section, read as the
files it asks a user to write and the commands it asks them to run, so that
the tests that follow it run what it says and cannot drift from it.

A file is a C{thrift} or C{python} block whose paragraph names it
("in C{`name.py`}"); a command block is an C{sh} block, found by what it
runs.  What a command prints is the quoted text of its C{# prints} comment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
SECTION = "## Using txthrift in your own project"

_FENCE = re.compile(r"^```(?P<language>\w*)\n(?P<text>.*?)^```$", re.MULTILINE | re.DOTALL)
_NAMED = re.compile(r"in `(?P<name>[\w.]+\.(?:thrift|py))`")


@dataclass(frozen=True)
class Block:
    """
    A fenced block and the paragraph just before it.
    """

    language: str
    text: str
    before: str


def section(title: str = SECTION) -> str:
    """
    The README's section C{title}, up to the next section of its level or
    one above.

    @raise AssertionError: if the README has no such section.
    """
    lines = README.read_text(encoding="utf-8").splitlines(keepends=True)
    assert f"{title}\n" in lines, f"README.md has no section {title!r}"
    start = lines.index(f"{title}\n") + 1
    level = len(title) - len(title.lstrip("#"))
    fenced = False
    for end in range(start, len(lines)):
        line = lines[end]
        fenced ^= line.startswith("```")
        heading = len(line) - len(line.lstrip("#"))
        if not fenced and 0 < heading <= level and line[heading:heading + 1] == " ":
            return "".join(lines[start:end])
    return "".join(lines[start:])


def blocks(text: str) -> list[Block]:
    """
    The fenced blocks of C{text}, in order.
    """
    found = []
    previous = 0
    for match in _FENCE.finditer(text):
        paragraphs = text[previous:match.start()].strip().split("\n\n")
        found.append(Block(match["language"], match["text"], paragraphs[-1]))
        previous = match.end()
    return found


def files(text: str) -> dict[str, str]:
    """
    The files C{text} asks for: their names and contents.
    """
    named: dict[str, str] = {}
    for block in blocks(text):
        if block.language in ("thrift", "python"):
            names = _NAMED.findall(block.before)
            assert names, f"no file named (in `name`) before this block:\n{block.text}"
            named[names[-1]] = block.text
    return named


def command(text: str, runs: str) -> str:
    """
    The one C{sh} block of C{text} that contains C{runs}.

    @raise AssertionError: unless exactly one does.
    """
    found = [block.text for block in blocks(text) if block.language == "sh" and runs in block.text]
    assert len(found) == 1, f"{len(found)} sh blocks run {runs!r}, not 1"
    return found[0]


def printing(block: str) -> list[tuple[str, list[str]]]:
    """
    Each command line of C{block} with the lines its C{# prints} comment
    says it prints.
    """
    lines = []
    for line in block.splitlines():
        command, _, comment = line.partition("#")
        if command.strip():
            lines.append((command.strip(), re.findall(r'"([^"]*)"', comment)))
    return lines
