#!/usr/bin/env python3
"""
Turn a conformance test run into docs/conformance.md.

    # run the conformance tests and write the report in one go:
    python scripts/conformance_report.py --run --output docs/conformance.md

    # or from a results file of an earlier run:
    TXTHRIFT_CONFORMANCE_JSON=results.json python -m pytest tests/test_conformance.py
    python scripts/conformance_report.py results.json --output docs/conformance.md

The results file is what tests/test_conformance.py writes when
TXTHRIFT_CONFORMANCE_JSON names a file.  With --run, the exit status is
pytest's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ENV = "TXTHRIFT_CONFORMANCE_JSON"
MARKS = {"pass": "✓", "fail": "✗", "n/a": "n/a", "not run": "–"}
WIRE_NAMES = {"binary": "binary", "compact": "compact", "json": "JSON"}


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


class Footnotes:
    """
    Numbered footnotes, one per distinct text.
    """

    def __init__(self) -> None:
        self.texts: list[str] = []

    def ref(self, text: str) -> int:
        if text not in self.texts:
            self.texts.append(text)
        return self.texts.index(text) + 1

    def render(self) -> list[str]:
        return [f"{n}. {_escape(text)}" for n, text in enumerate(self.texts, 1)]


#: What the report says of the columns of each transport, where it has one.
TRANSPORT_TEXTS = {
    "http": ("http: Thrift over HTTP, each call one POST whose body is the message, answered"
             " by txthrift.web; the clients are Apache's THttpClient, thriftpy2's http client"
             " and txthrift's http:// client."),
    "header": ("header: THeader, each message a frame with the 0x0FFF magic, its protocol's"
               " id and headers; Apache's end is its THeaderProtocol (a client with"
               " THeaderClientType.HEADERS, a TThreadedServer with THeaderProtocolFactory"
               " allowing only HEADERS, so that nothing falls back to plain framing),"
               " txthrift's client `transport=\"header\"`."),
    "header-zlib": ("header+zlib: the same with the client adding the zlib transform to"
                    " every request (Apache's THeaderTransformID.ZLIB, txthrift's"
                    " `transforms=(\"zlib\",)`); a txthrift server answers with the"
                    " request's transforms, Apache's without any."),
    "zlib": ("zlib: Apache's TZlibTransport around TFramedTransport (txthrift's"
             " `transport=\"zlib\"`), Apache's server a TThreadedServer with a new such"
             " transport per connection."),
    "zlib-buffered": ("zlib-buffered: TZlibTransport around TBufferedTransport, the stream"
                      " bare (txthrift's `transport=\"zlib-buffered\"`; the zlib of Apache's"
                      " cross-language tests)."),
}


def _transportName(doc: dict[str, Any], transport: str) -> str:
    names: dict[str, str] = doc.get("transportNames", {})
    return names.get(transport, transport)


def matrixTable(doc: dict[str, Any], transports: list[str], notApplicable: Footnotes,
                failures: list[dict[str, Any]]) -> list[str]:
    """
    One table of the matrix: every row, the columns of C{transports}.
    """
    protocols = doc["protocols"]
    columns = [(t, p) for t in transports for p in protocols]
    cells = {(c["client"], c["server"], c["transport"], c["protocol"]): c
             for c in doc["matrix"]}
    lines = [
        "| client → server | " + " | ".join(
            f"{_transportName(doc, t)} {protocols[p]}" for t, p in columns) + " |",
        "| --- | " + " | ".join("---" for _ in columns) + " |",
    ]
    for client, server in doc["rows"]:
        row = [f"{doc['clients'][client]} → {doc['servers'][server]}"]
        for t, p in columns:
            cell = cells.get((client, server, t, p))
            if cell is None:
                row.append("?")
                continue
            mark = MARKS[cell["status"]]
            if cell["status"] == "n/a":
                mark += f" [{notApplicable.ref(cell['detail'])}]"
            elif cell["status"] == "fail":
                failures.append(cell)
            row.append(mark)
        lines.append("| " + " | ".join(_escape(text) for text in row) + " |")
    return lines


def matrixSection(doc: dict[str, Any]) -> list[str]:
    transports, protocols = doc.get("matrixTransports", doc["transports"]), doc["protocols"]
    groups: list[list[str]] = doc.get("matrixGroups", [transports])
    counts = {status: 0 for status in MARKS}
    for cell in doc["matrix"]:
        counts[cell["status"]] += 1
    notApplicable = Footnotes()
    failures: list[dict[str, Any]] = []
    explained = [TRANSPORT_TEXTS[t] for t in transports if t in TRANSPORT_TEXTS]
    lines = [
        "## The matrix",
        "",
        f"**{counts['pass']} cells pass, {counts['fail']} fail, {counts['n/a']} cannot exist"
        + (f", {counts['not run']} were not run" if counts["not run"] else "") + ".**",
        "",
        ("Rows are client → server, columns transport and protocol"
        + (f", in {len(groups)} tables" if len(groups) > 1 else "") + ".  A protocol column"
        " names the encoder of the end that is not txthrift: Apache's pure-Python or"
        " C-accelerated (`fastbinary`) protocol factory, or thriftpy2's pure-Python or Cython"
        " protocol; txthrift.TTwisted takes Apache's factories, so for it the column names its"
        " own encoder too.  A txthrift end always uses Apache's C codec for binary and compact"
        f" when the extension is installed (here: {doc['versions']['thrift C extension']})."
        + (" A txthrift server serves the columns of header and zlib with its defaults,"
           " `transport=\"auto\"` and `protocol=\"auto\"` (as `twistd thrift` does),"
           " detecting each connection's framing and protocol; the other columns with the"
           " transport and protocol fixed." if "header" in transports else "")),
    ]
    if explained:
        lines += ["", *[f"- {_escape(text)}" for text in explained]]
    for group in groups:
        lines += ["", *matrixTable(doc, group, notApplicable, failures)]
    lines += ["", "Cells that cannot exist:", "", *notApplicable.render()]
    if doc.get("notes"):
        lines += ["", "What some cells leave out or accept differently:", ""]
        lines += [f"- {_escape(note)}" for note in doc["notes"]]
    if failures:
        lines += ["", "Failing cells:", ""]
        lines += [f"- {doc['clients'][c['client']]} → {doc['servers'][c['server']]},"
                  f" {_transportName(doc, c['transport'])} {protocols[c['protocol']]}:"
                  f" {_escape(c['detail'])}"
                  for c in failures]
    passed = [c for c in doc["matrix"] if c["status"] == "pass"]
    if passed:
        calls = sum(c.get("calls", 0) for c in passed)
        lines += ["", f"The passing cells made {calls} calls in all, each checked exactly."]
    return lines


def outcomeSection(title: str, intro: str, entries: list[dict[str, Any]],
                   transports: list[str]) -> list[str]:
    """
    A table of tests outside the matrix: rows test × peer, columns transport
    × wire protocol.
    """
    wires = [w for w in WIRE_NAMES if any(e["protocol"] == w for e in entries)]
    columns = [(t, w) for t in transports for w in wires]
    rows: dict[tuple[str, str], dict[tuple[str, str], dict[str, Any]]] = {}
    for entry in entries:
        rows.setdefault((entry["test"], entry["peer"]), {})[
            entry["transport"], entry["protocol"]] = entry
    notes = Footnotes()
    lines = [f"## {title}", "", intro, "",
             "| test | peer | " + " | ".join(f"{t} {WIRE_NAMES[w]}" for t, w in columns) + " |",
             "| --- | --- | " + " | ".join("---" for _ in columns) + " |"]
    for (test, peer), byColumn in rows.items():
        row = [test, peer]
        for column in columns:
            found = byColumn.get(column)
            if found is None:
                row.append("–")
                continue
            mark = MARKS[found["status"]]
            if found["status"] == "fail":
                why = found.get("known") or found["detail"]
                mark += f" [{notes.ref(why)}]"
            row.append(mark)
        lines.append("| " + " | ".join(_escape(text) for text in row) + " |")
    if notes.texts:
        lines += ["", "Why cells fail:", "", *notes.render()]
        details = sorted({e["detail"] for e in entries if e["status"] == "fail" and e["detail"]})
        if details:
            lines += ["", "<details><summary>What the failing checks reported</summary>", ""]
            lines += [f"- {_escape(detail)}" for detail in details]
            lines += ["", "</details>"]
    return lines


def render(doc: dict[str, Any], producedBy: str) -> str:
    versions = doc["versions"]
    lines = [
        "# Conformance",
        "",
        "<!-- Generated by scripts/conformance_report.py from a test run: do not edit. -->",
        "",
        ("How txthrift interoperates with Apache Thrift's own Python implementation and with"
        " thriftpy2, an independent one: every part of the Thrift type system"
        " (`tests/gen/Conformance.thrift`: every base type with its edge values, NaN,"
        " infinities and -0.0, 1 MiB strings and binaries, all 256 byte values, containers of"
        " each type and nested ones, enums with a value the IDL does not declare, typedefs,"
        " required/optional/default fields, recursive structs, unions, several declared"
        " exceptions, void and oneway methods, 15 arguments, an inherited service and a"
        " second, multiplexed one), over every transport and protocol, on real sockets on"
        " 127.0.0.1.  In each cell one client makes every call on one connection (over"
        " HTTP, one request each) and checks"
        " that every value came back exactly: NaN as NaN, the sign of -0.0, `str` as `str`"
        " and `bytes` as `bytes`, a set as a set."),
        "",
        f"- Run: {doc['date']}, in {doc['seconds']} s",
        f"- Produced by: `{producedBy}`",
        f"- Test command: `{' '.join(doc['command'])}` with `{ENV}` set",
        "- Versions: " + ", ".join(f"{name} {value}" for name, value in versions.items()),
        "",
    ]
    lines += matrixSection(doc)
    sections = doc.get("sections", {})
    if sections.get("limits"):
        lines += [""] + outcomeSection(
            "Limits",
            "A string, binary or container over a configured limit (here 1000) must be"
            " refused, never truncated: a txthrift server refuses the request (an"
            " exception reply or a closed connection) and its handler never sees the value;"
            " a txthrift client fails the call with an error that names the limit.  A value"
            " exactly at the limit passes.",
            sections["limits"], doc["transports"])
    if sections.get("json-non-finite"):
        lines += [""] + outcomeSection(
            "Non-finite doubles over JSON",
            "NaN, Infinity and -Infinity between txthrift ends over JSON.",
            sections["json-non-finite"], doc["transports"])
    return "\n".join(lines) + "\n"


def runTests() -> tuple[int, dict[str, Any]]:
    with tempfile.TemporaryDirectory() as scratch:
        results = Path(scratch) / "conformance.json"
        command = [sys.executable, "-m", "pytest", "tests/test_conformance.py", "-q"]
        status = subprocess.call(command, cwd=ROOT, env={**os.environ, ENV: str(results)})
        if not results.exists():
            raise SystemExit(f"the test run wrote no results (pytest exit status {status})")
        return status, json.loads(results.read_text(encoding="utf-8"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="?", help="a results file of an earlier run")
    parser.add_argument("--run", action="store_true", help="run tests/test_conformance.py first")
    parser.add_argument("--output", "-o", help="where to write the Markdown (default: stdout)")
    args = parser.parse_args(argv)
    if args.run == bool(args.results):
        parser.error("give a results file, or --run")
    status = 0
    script = "python scripts/conformance_report.py"
    if args.run:
        status, doc = runTests()
        producedBy = f"{script} --run" + (f" --output {args.output}" if args.output else "")
    else:
        doc = json.loads(Path(args.results).read_text(encoding="utf-8"))
        producedBy = f"{script} {args.results}" + (f" --output {args.output}"
                                                   if args.output else "")
    text = render(doc, producedBy)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return status


if __name__ == "__main__":
    sys.exit(main())
