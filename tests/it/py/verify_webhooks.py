"""Verifies webhook deliveries with the independent `standardwebhooks` library (PyPI), for
tests/it/notifications.rs. Reads {"secrets": [...], "deliveries": [{"headers": {...},
"body": "..."}]} from the file named by argv[1]; prints, per delivery, per secret, "ok" or
why the library refused it."""

import json
import sys

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

data = json.load(open(sys.argv[1]))
out = []
for d in data["deliveries"]:
    row = []
    for secret in data["secrets"]:
        try:
            Webhook(secret).verify(d["body"], d["headers"])
            row.append("ok")
        except WebhookVerificationError as e:
            row.append(f"refused: {e}")
    out.append(row)
print(json.dumps(out))
