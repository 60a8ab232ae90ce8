"""Parses Prometheus text exposition with the independent `prometheus_client` parser (PyPI),
for tests/it/status.rs. Reads the files named by argv[1:]; prints, per file, its metric
families as {name: {"type": ..., "samples": [[sample name, labels, value], ...]}}. A file
the parser refuses makes this exit non-zero with the parser's complaint."""

import json
import math
import sys

from prometheus_client.parser import text_string_to_metric_families

out = []
for path in sys.argv[1:]:
    families = {}
    for f in text_string_to_metric_families(open(path).read()):
        families[f.name] = {
            "type": f.type,
            "samples": [
                [s.name, s.labels, s.value if math.isfinite(s.value) else str(s.value)]
                for s in f.samples
            ],
        }
    out.append(families)
print(json.dumps(out))
