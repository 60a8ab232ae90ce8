"""Parses an RFC 5322 message with Python's own `email` package (not our MIME code), for
the notification tests. Prints its headers, text and HTML parts and attachments (name,
type, SHA-256) as JSON; argv[1] is the file."""

import hashlib
import json
import sys
from email import policy
from email.parser import BytesParser

msg = BytesParser(policy=policy.default).parse(open(sys.argv[1], "rb"))
text = msg.get_body(preferencelist=("plain",))
html = msg.get_body(preferencelist=("html",))
attachments = []
for part in msg.iter_attachments():
    payload = part.get_content()
    if isinstance(payload, str):
        payload = payload.encode()
    attachments.append({
        "filename": part.get_filename(),
        "content_type": part.get_content_type(),
        "sha256": hashlib.sha256(payload).hexdigest(),
        "size": len(payload),
    })
print(json.dumps({
    "from": str(msg["from"]),
    "to": str(msg["to"]),
    "subject": str(msg["subject"]),
    "message_id": str(msg["message-id"]),
    "text": text.get_content() if text else None,
    "html": html.get_content() if html else None,
    "attachments": attachments,
}))
