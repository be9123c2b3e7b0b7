"""``omi serve`` in a process whose OpenTelemetry SDK keeps its spans in memory (the SDK's own
``InMemorySpanExporter``), as an application that configures OpenTelemetry itself would; at exit
the spans are written, one JSON object per line, to ``$OMI_TEST_SPANS``.

Usage: ``python tests/serving/traced_serve.py serve TARGET ...`` (the arguments of ``omi``).
"""

from __future__ import annotations

import atexit
import json
import os
import sys

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)


@atexit.register
def _dump() -> None:
    with open(os.environ["OMI_TEST_SPANS"], "w") as out:
        for span in exporter.get_finished_spans():
            parent = span.parent
            out.write(
                json.dumps(
                    {
                        "name": span.name,
                        "kind": span.kind.name,
                        "trace_id": f"{span.context.trace_id:032x}",
                        "span_id": f"{span.context.span_id:016x}",
                        "parent_id": f"{parent.span_id:016x}" if parent is not None else None,
                        "status": span.status.status_code.name,
                        "start": span.start_time,
                        "end": span.end_time,
                        "attributes": dict(span.attributes or {}),
                    }
                )
                + "\n"
            )


if __name__ == "__main__":
    from omi_adapters.cli import main

    sys.exit(main(sys.argv[1:]))
