"""Runs the independent SCIM 2.0 conformance checker (scim2-tester, PyPI) against a running
stack and prints one line per check and the counts per status.

    SCIM_URL=http://127.0.0.1:8080/scim/v2 SCIM_TOKEN=scim_… python conformance.py

Exits 1 when any check ends in ERROR or CRITICAL (a MUST of RFC 7643/7644 broken).
"""

import collections
import json
import os
import sys

import httpx2
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import Status, check_server


def main() -> int:
    url = os.environ["SCIM_URL"].rstrip("/") + "/"
    token = os.environ["SCIM_TOKEN"]
    http = httpx2.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    results = check_server(SyncSCIMClient(http))
    counts = collections.Counter()
    for r in results:
        counts[r.status.name] += 1
        line = f"{r.status.name:10} {r.resource_type or '-':6} {r.title}"
        if r.status in (Status.ERROR, Status.CRITICAL, Status.DEVIATION):
            line += f"\n           {r.reason}"
        print(line)
    print("\n" + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())))
    # The last line, for tests/it/scim.rs: every check that broke a MUST of the RFCs.
    failures = sorted(
        f"{r.resource_type or '-'} {r.title}: {r.reason}"
        for r in results
        if r.status in (Status.ERROR, Status.CRITICAL)
    )
    print(json.dumps({"counts": counts, "failures": failures}))
    return 1 if counts["ERROR"] or counts["CRITICAL"] else 0


if __name__ == "__main__":
    sys.exit(main())
