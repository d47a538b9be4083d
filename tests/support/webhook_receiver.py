"""A webhook receiver for the tests: verifies every delivery with the official
`standardwebhooks` library and logs what it saw.

    python webhook_receiver.py PORT FOLDER

A request to /NAME/STATUS is answered STATUS (after /NAME/STATUS/SECONDS, that many seconds
later). Each line of FOLDER/NAME.secrets is a secret to verify with; the request is logged as
one JSON line in FOLDER/NAME.log with, for each secret, whether the signature verified.
"""

import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

FOLDER = Path(sys.argv[2])


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        parts = self.path.strip("/").split("/")
        name, status = parts[0], int(parts[1])
        delay = float(parts[2]) if len(parts) > 2 else 0.0
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        headers = {key.lower(): value for key, value in self.headers.items()}
        secrets_file = FOLDER / f"{name}.secrets"
        secrets = secrets_file.read_text().split() if secrets_file.exists() else []
        verified = []
        for secret in secrets:
            try:
                Webhook(secret).verify(body, headers)
                verified.append(True)
            except WebhookVerificationError:
                verified.append(False)
        record = {
            "at": time.time(),
            "id": headers.get("webhook-id"),
            "timestamp": headers.get("webhook-timestamp"),
            "signature": headers.get("webhook-signature"),
            "content_type": headers.get("content-type"),
            "body": json.loads(body),
            "verified": verified,
        }
        with open(FOLDER / f"{name}.log", "a") as log:
            log.write(json.dumps(record) + "\n")
        if delay:
            time.sleep(delay)
        self.send_response(status)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
