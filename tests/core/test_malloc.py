"""glibc's allocator, as ``omi serve`` sets it (omi_adapters.malloc): a request's large buffers
reuse the pages of the previous request's instead of faulting in fresh ones."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="glibc's mallopt"
)

# Page faults per "request" of four buffers of a little over 4 MiB each, alive together (a
# request, its decoded tensor, the model's output, the reply), once the first request has run.
SCRIPT = textwrap.dedent(
    """
    import resource, sys
    from omi_adapters import malloc
    tuned = malloc.tune()
    MIB = 1 << 20
    def request():
        held = [bytearray(4 * MIB + 100 * i) for i in range(4)]  # zeroed: every page touched
        del held
    def faults():
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    request()
    before = faults()
    for _ in range(20):
        request()
    print(tuned, (faults() - before) / 20)
    """
)


def run(env: dict[str, str]) -> tuple[bool, float]:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True, env={**os.environ, **env}
    ).stdout.split()
    return out[0] == "True", float(out[1])


def test_large_buffers_reuse_their_pages_once_tuned() -> None:
    tuned, faults = run({})
    assert tuned
    assert faults < 100, f"{faults} page faults per request of 16 MiB"


def test_the_environment_s_own_thresholds_are_left_alone() -> None:
    # glibc's own variable for the trim threshold (128 KiB: its default): omi leaves it be, and
    # each request then faults in most of its 4096 pages again.
    tuned, faults = run({"MALLOC_TRIM_THRESHOLD_": "131072"})
    assert not tuned
    assert faults > 1000
