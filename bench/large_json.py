"""Decoding large JSON request bodies: throughput, peak memory and the longest GIL hold.

Each measure runs in a fresh process, so that its peak RSS is its own::

    .venv/bin/python bench/large_json.py            # 4 and 64 MiB FP32 bodies, both paths
    .venv/bin/python bench/large_json.py 512 fast   # one size, one path

``fast`` is ``oip_json.decode_request`` (large numeric arrays decoded in chunks); ``exact`` is
``request_from_dict(loads(body))``, the single orjson parse it falls back to. Numbers are
written like 0.123456 (9 bytes each with the comma). The GIL measure is the longest a thread
that sleeps 1 ms at a time waited while another thread decoded the body: the switch interval
(5 ms) plus the longest call that held the GIL.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

MEASURE = textwrap.dedent(
    """
    import gc, sys, threading, time
    import numpy as np
    from omi_adapters.codecs import oip_json

    mib, path = {mib}, {path!r}
    block = ",".join(f"{{v:.6f}}" for v in np.random.default_rng(7).random((1 << 20) // 9)).encode()
    n = ((1 << 20) // 9) * mib
    head = b'{{"inputs":[{{"name":"X","datatype":"FP32","shape":[%d],"data":[' % n
    body = b"".join([head, block, *[b"," + block] * (mib - 1), b"]}}]}}"])
    decode = oip_json.decode_request if path == "fast" else lambda b: oip_json.request_from_dict(oip_json.loads(b))
    decode(b'{{"inputs":[{{"name":"X","datatype":"FP32","shape":[1],"data":[1.0]}}]}}')
    gc.collect()
    def status(key):
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith(key)) * 1024
    before = status("VmRSS:")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # the peak (VmHWM) starts again from the RSS now: ru_maxrss would include the parent's
    done, gaps = threading.Event(), []
    def work():
        global seconds
        start = time.perf_counter()
        decode(body)
        seconds = time.perf_counter() - start
        done.set()
    thread = threading.Thread(target=work)
    thread.start()
    while not done.is_set():
        start = time.perf_counter()
        time.sleep(0.001)
        gaps.append(time.perf_counter() - start)
    thread.join()
    peak = status("VmHWM:")
    print(
        f"{{path:5}} {{len(body) / 2**20:4.0f}} MiB: {{len(body) / seconds / 1e6:5.0f}} MB/s, "
        f"peak memory +{{(peak - before) / len(body):.2f}}x the body, longest wait {{max(gaps) * 1000:.0f}} ms"
    )
    """
)


def measure(mib: int, path: str) -> None:
    subprocess.run([sys.executable, "-c", MEASURE.format(mib=mib, path=path)], check=True)


if __name__ == "__main__":
    sizes = [int(sys.argv[1])] if len(sys.argv) > 1 else [4, 64]
    paths = [sys.argv[2]] if len(sys.argv) > 2 else ["exact", "fast"]
    for size in sizes:
        for path in paths:
            measure(size, path)
