"""A webhook receiver for the tests: answers each path by its plan and checks every
request with the `standardwebhooks` package (an implementation independent of huiying's).

    webhook_receiver.py PORT SECRET LOG PATH=PLAN ...

PLAN is a comma-separated list of answers, used in order (the last repeats): a status
(`200`), a status with a Retry-After (`500@2`), or `hang` (answer nothing for a minute).
Each request is appended to LOG as one JSON line: path, headers, body, whether the
signature verifies, and whether it still verifies with the body or the timestamp changed
by one byte (it must not).
"""

import json
import sys
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook

port, secret, log_path = int(sys.argv[1]), sys.argv[2], sys.argv[3]
plans = {}
for item in sys.argv[4:]:
    path, plan = item.split("=", 1)
    plans[path] = plan.split(",")
counts = {}
lock = threading.Lock()
webhook = Webhook(secret)


def verifies(body, headers):
    try:
        webhook.verify(body, headers)
        return True
    except Exception:
        return False


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        headers = {k.lower(): v for k, v in self.headers.items()}
        changed_body = body[:-1] + bytes([body[-1] ^ 1]) if body else b"x"
        later = dict(headers, **{"webhook-timestamp": str(int(headers.get("webhook-timestamp", "0")) + 1)})
        with lock:
            counts[self.path] = counts.get(self.path, 0) + 1
            plan = plans.get(self.path, ["200"])
            answer = plan[min(counts[self.path], len(plan)) - 1]
            with open(log_path, "a") as log:
                log.write(json.dumps({
                    "path": self.path,
                    "at": time.time(),
                    "headers": headers,
                    "body": body.decode(),
                    "verified": verifies(body, headers),
                    "verified_with_changed_body": verifies(changed_body, headers),
                    "verified_with_changed_timestamp": verifies(body, later),
                }) + "\n")
        if answer == "hang":
            time.sleep(60)
            return
        status, _, retry_after = answer.partition("@")
        self.send_response(int(status))
        if retry_after:
            self.send_header("Retry-After", retry_after)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(f"answer {status} from {self.path}".encode())

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
