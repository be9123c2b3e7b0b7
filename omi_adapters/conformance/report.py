"""The rows a conformance run produces, and the two ways they are printed (a table, JSON)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Literal

__all__ = ["FAIL", "KNOWN", "PASS", "SKIP", "Report", "Row"]

Outcome = Literal["PASS", "FAIL", "SKIP", "KNOWN"]
PASS: Outcome = "PASS"
FAIL: Outcome = "FAIL"
#: A check the server does not claim to support (or that an earlier failure made pointless): not a failure.
SKIP: Outcome = "SKIP"
#: A failure the user named with ``--known-failure`` (a server's known deviation): shown, not counted against it.
KNOWN: Outcome = "KNOWN"

#: A detail is one line; a server may answer with a page of HTML, which the table shortens to this.
_DETAIL_CHARS = 300


@dataclass(frozen=True)
class Row:
    """One check: which protocol, what was checked, the outcome, and what was expected and came back."""

    protocol: str
    check: str
    outcome: Outcome
    detail: str


@dataclass
class Report:
    """The rows of one run, in the order they were checked."""

    rows: list[Row] = field(default_factory=list)
    #: Checks whose failure is known: a name as printed (``wrong shape [adder]``), or without the model.
    known: frozenset[str] = frozenset()

    def add(self, protocol: str, check: str, outcome: Outcome, detail: str) -> Row:
        """Record a row; ``detail`` is made one line, a known failure's outcome becomes KNOWN."""
        if outcome == FAIL and (check in self.known or check.split(" [")[0] in self.known):
            outcome, detail = KNOWN, f"known failure (--known-failure): {detail}"
        row = Row(protocol, check, outcome, _one_line(detail))
        self.rows.append(row)
        return row

    def __iter__(self) -> Iterator[Row]:
        return iter(self.rows)

    @property
    def passed(self) -> bool:
        """No row failed (SKIPs do not count against the server)."""
        return all(row.outcome != FAIL for row in self.rows)

    def counts(self) -> dict[str, int]:
        """How many rows of each outcome."""
        return {o: sum(row.outcome == o for row in self.rows) for o in (PASS, FAIL, SKIP, KNOWN)}

    def table(self) -> str:
        """A plain-text table, one row per check, then a summary line."""
        header = ("PROTOCOL", "CHECK", "RESULT", "DETAIL")
        lines = [(r.protocol, r.check, r.outcome, _shorten(r.detail)) for r in self.rows]
        widths = [max(len(cells[i]) for cells in [header, *lines]) for i in range(3)]
        out = []
        for cells in [header, *lines]:
            out.append("  ".join(c.ljust(w) for c, w in zip(cells[:3], widths)) + "  " + cells[3])
        counts = self.counts()
        verdict = "all checks passed" if self.passed else f"{counts[FAIL]} check(s) failed"
        out.append("")
        known = f", {counts[KNOWN]} known failures" if counts[KNOWN] else ""
        out.append(f"{counts[PASS]} passed, {counts[FAIL]} failed, {counts[SKIP]} skipped{known}: {verdict}")
        return "\n".join(line.rstrip() for line in out)

    def to_json(self) -> str:
        """``{"passed": bool, "counts": {...}, "rows": [{"protocol", "check", "outcome", "detail"}, ...]}``."""
        document = {"passed": self.passed, "counts": self.counts(), "rows": [asdict(r) for r in self.rows]}
        return json.dumps(document, indent=2)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _shorten(text: str) -> str:
    return text if len(text) <= _DETAIL_CHARS else text[: _DETAIL_CHARS - 3] + "..."
