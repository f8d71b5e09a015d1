#!/usr/bin/env python3
"""deploy/sink.py — the demo cluster's alert sink (docker-compose service "sink").

Receives what the alerter sends so a demo can see it without an external service:
  - webhooks: any POST on http://sink:8025/... is kept (last 200) and logged as a JSON line;
  - email: SMTP on sink:2525 (aiosmtpd), each message kept and logged the same way.
GET http://sink:8025/received returns everything kept, newest last, as JSON.
Not for production: no authentication, no TLS, memory only.
"""
import collections
import http.server
import json
import sys
import threading
import time

from aiosmtpd.controller import Controller

KEEP = 200
received = collections.deque(maxlen=KEEP)
lock = threading.Lock()


def keep(kind, **fields):
    item = {"ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "kind": kind, **fields}
    with lock:
        received.append(item)
    print(json.dumps(item), flush=True)


class Hooks(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(min(n, 1 << 20)).decode("utf-8", "replace")
        keep("webhook", path=self.path, webhook_id=self.headers.get("webhook-id"), body=body)
        self.send_response(204)
        self.end_headers()

    def do_GET(self):
        if self.path not in ("/received", "/healthz"):
            self.send_error(404)
            return
        with lock:
            data = json.dumps(list(received) if self.path == "/received" else {"status": "ok"})
        out = data.encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, fmt, *args):
        pass


class Mail:
    async def handle_DATA(self, server, session, envelope):
        keep("email", mail_from=envelope.mail_from, rcpt_tos=envelope.rcpt_tos,
             body=envelope.content.decode("utf-8", "replace")[:65536])
        return "250 OK"


def main():
    smtp = Controller(Mail(), hostname="0.0.0.0", port=2525)
    smtp.start()
    httpd = http.server.ThreadingHTTPServer(("0.0.0.0", 8025), Hooks)
    print(json.dumps({"msg": "sink listening", "http": 8025, "smtp": 2525}), flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    smtp.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
