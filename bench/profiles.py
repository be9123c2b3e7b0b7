"""Where omi serve's time goes for each missed target: py-spy samples the server while the
figure's load runs, and the report lists the functions with the most samples.

``py-spy record --format raw`` writes one line per distinct stack (``frame;frame;... count``,
outermost first, each frame ``function (file:line)``). A function's *own* share is the samples
whose innermost frame it is; its *total* share is the samples with it anywhere on the stack
(each stack counted once). Line numbers are dropped so a function is one row. The cold start is
profiled with ``python -X importtime``: the modules whose import took longest, cumulatively.
"""

from __future__ import annotations

import collections
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import harness
from harness import Server

#: Samples per second: enough for a few thousand samples in a measurement, little enough that
#: the sampler (on the client core) does not slow the server.
RATE = 250
TOP = 12
#: Functions on at least this share of the stacks are the trunk (left out of the total column).
TRUNK = 0.9
_LINE = re.compile(r":\d+\)$")


def py_spy() -> str | None:
    """The py-spy of the venv that runs the bench (a dev dependency), if it is there."""
    found = Path(sys.executable).with_name("py-spy")
    return str(found) if found.exists() else shutil.which("py-spy")


def record(server: Server, load: Callable[[], Any], seconds: float) -> dict[str, Any]:
    """Sample ``server`` while ``load()`` runs; its own and total shares, top first."""
    tool = py_spy()
    if tool is None:
        raise RuntimeError("py-spy is missing (it is in requirements/dev.txt)")
    fd, name = tempfile.mkstemp(prefix="omi-bench.", suffix=".stacks")
    os.close(fd)
    out = Path(name)
    # --gil: only the thread holding the GIL is sampled: on one core that is where the time goes,
    # and the idle pool threads (blocked in C) are left out.
    command = [tool, "record", "--pid", str(server.pid), "--gil", "--format", "raw", "--rate", str(RATE),
               "--output", str(out), "--duration", str(int(seconds) + 30)]  # fmt: skip
    sampler = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)  # py-spy attaches
        load()
    finally:
        sampler.send_signal(signal.SIGINT)  # py-spy writes what it has and exits
        try:
            _, err = sampler.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            sampler.kill()
            _, err = sampler.communicate()
    try:
        text = out.read_text()
    finally:
        out.unlink(missing_ok=True)
    if not text.strip():
        raise RuntimeError(f"py-spy recorded nothing: {err.strip()[-500:]}")
    return summarize(text)


def summarize(stacks: str) -> dict[str, Any]:
    """The own and total shares of each function in py-spy's raw (collapsed) stacks."""
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in stacks.splitlines():
        path, _, count_text = line.rpartition(" ")
        if not path or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame(f) for f in path.split(";") if f]
        if not frames:
            continue
        samples += count
        own[frames[-1]] += count
        for frame in set(frames):
            total[frame] += count
    # The trunk every stack shares (runpy, the CLI, the event loop's run) says nothing: left out.
    branches = [(f, n) for f, n in total.most_common() if n <= TRUNK * samples]
    return {
        "samples": samples,
        "own": [(f, n / samples) for f, n in own.most_common(TOP)],
        "total": [(f, n / samples) for f, n in branches[:TOP]],
    }


def _frame(frame: str) -> str:
    """``function (path/to/file.py:12)`` as ``function (file.py)``, the path shortened."""
    frame = _LINE.sub(")", frame.strip())
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    parts = Path(where).parts
    for anchor in ("site-packages", "omi_adapters", "bench", "lib"):
        if anchor in parts:
            parts = parts[parts.index(anchor) + (1 if anchor in ("site-packages", "lib") else 0) :]
            break
    return f"{name} ({'/'.join(parts[-3:])})" if where else name


def import_times(command: list[str], port: int, path: str, body: bytes) -> dict[str, Any]:
    """Start ``command`` with ``-X importtime`` until its first answer: the slowest imports, cumulative."""
    python, rest = command[0], command[1:]
    server = Server("cold_profile", [python, "-X", "importtime", *rest])
    server.start()
    try:
        seconds = harness.first_answer(server, port, path, body)
        text = server.log.read_text(errors="replace")  # stop() removes the log
    finally:
        server.stop()
    rows = []
    for line in text.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
        if match:
            rows.append((int(match.group(2)) / 1e6, len(match.group(3)) // 2, match.group(4)))
    top_level = sorted((r for r in rows if r[1] <= 1), reverse=True)[:TOP]
    return {"first_answer_s": seconds, "imports_s": sum(r[0] for r in rows if r[1] <= 1),
            "top": [(module, s) for s, _, module in top_level]}  # fmt: skip


def markdown(profiles: dict[str, Any]) -> list[str]:
    """The "Profiles" section of RESULTS.md."""
    if not profiles:
        return []
    intro = (
        f"omi serve under each missed figure's load, sampled by py-spy at {RATE} Hz, the thread that "
        "holds the GIL only (own: the function itself; total: it and what it calls, the trunk every "
        "stack shares left out; share of samples)."
    )
    lines = ["## Profiles of the missed targets", "", intro, ""]
    for entry in profiles.values():
        lines += [f"### {entry['title']}", ""]
        if "error" in entry:
            lines += [f"Not profiled: {entry['error']}", ""]
            continue
        if "top" in entry:
            imports = (
                f"`-X importtime`: {entry['imports_s']:.3f} s of imports before the first answer "
                f"({entry['first_answer_s']:.3f} s); the slowest top-level imports, with what they import:"
            )
            lines += [imports, "", "| module | seconds |", "|---|---|"]
            lines += [f"| `{module}` | {seconds:.3f} |" for module, seconds in entry["top"]]
            lines.append("")
            continue
        lines += [f"{entry['samples']} samples.", "", "| own | share | total | share |", "|---|---|---|---|"]
        for (own, own_share), (total, total_share) in zip(entry["own"], entry["total"], strict=False):
            lines.append(f"| `{own}` | {own_share:.1%} | `{total}` | {total_share:.1%} |")
        lines.append("")
    return lines
