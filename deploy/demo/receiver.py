#!/usr/bin/python3
"""Demonstration receiver of notify's deliveries: a webhook receiver and an SMTP sink.

    deploy/demo/receiver.py --config CONFIG --http-port PORT --smtp-port PORT [--log FILE]

For the local runner (deploy/run-local.sh) and the tests only: listens on 127.0.0.1, keeps
nothing, and prints one line per delivery on stdout (and appends it to --log):

    receiver: webhook demo-coordinator-webhook case.opened delivery 6f1c... signature valid
    receiver: email duty-officer@example.invalid referral.created delivery 0a9e...

Webhooks are POSTed to /<subscription_id> (run-local.sh points every webhook subscription of
CONFIG there); the signature X-NRM-Signature: sha256=<hex HMAC-SHA256(secret, body)> is checked
with that subscription's secret from CONFIG ("signature valid", "signature INVALID", or
"signature unchecked" when CONFIG gives no secret). Every webhook is answered 204, every mail
250. SIGTERM and SIGINT stop it at once. Standard library only (Python 3.11).
"""

import argparse
import hashlib
import hmac
import http.server
import json
import os
import signal
import socketserver
import sys
import threading

MAX_BODY = 4 * 1024 * 1024  # larger requests are refused (413)
MAX_LINE = 4096  # SMTP command lines


class Out:
    """One line per delivery on stdout and in the log, whole lines from every thread."""

    def __init__(self, log_path):
        self.lock = threading.Lock()
        self.log = open(log_path, "a", encoding="utf-8") if log_path else None

    def line(self, text):
        with self.lock:
            print("receiver: " + text, flush=True)
            if self.log:
                self.log.write("receiver: " + text + "\n")
                self.log.flush()


def secrets_of(config_path):
    """subscription_id -> secret of every webhook subscription in the configuration."""
    with open(config_path, encoding="utf-8") as f:
        config = json.load(f)
    return {
        s.get("subscription_id", ""): s.get("secret", "")
        for s in config.get("subscriptions", [])
        if s.get("channel") == "webhook"
    }


def signature_state(secret, body, header):
    if not secret:
        return "signature unchecked"
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return "signature valid" if hmac.compare_digest(expected, header or "") else "signature INVALID"


def make_webhook_handler(secrets, out):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            if length < 0 or length > MAX_BODY:
                self.send_response(413)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = self.rfile.read(length)
            subscription = self.path.strip("/").split("?")[0]
            try:
                topic = json.loads(body).get("type", "?")
            except (ValueError, AttributeError):
                topic = "(not CloudEvents JSON)"
            state = signature_state(
                secrets.get(subscription, ""), body, self.headers.get("X-NRM-Signature")
            )
            out.line(
                "webhook %s %s delivery %s %s"
                % (subscription or "-", topic, self.headers.get("X-NRM-Delivery", "-"), state)
            )
            self.send_response(204)
            self.end_headers()

        def log_message(self, fmt, *args):  # no access log
            pass

    return Handler


def make_smtp_handler(out):
    class Handler(socketserver.StreamRequestHandler):
        """A minimal SMTP responder: enough of RFC 5321 for libcurl's client, no TLS, no AUTH."""

        def reply(self, text):
            self.wfile.write((text + "\r\n").encode())
            self.wfile.flush()

        def handle(self):
            self.reply("220 nrm-demo-sink ESMTP")
            recipients = []
            while True:
                line = self.rfile.readline(MAX_LINE)
                if not line:
                    return
                verb = line.decode("latin-1").strip().split(" ", 1)[0].split(":", 1)[0].upper()
                if verb in ("EHLO", "HELO"):
                    self.reply("250 nrm-demo-sink")
                elif verb == "MAIL":
                    recipients = []
                    self.reply("250 OK")
                elif verb == "RCPT":
                    recipients.append(line.decode("latin-1").split(":", 1)[-1].strip(" <>\r\n"))
                    self.reply("250 OK")
                elif verb == "DATA":
                    self.reply("354 end with <CRLF>.<CRLF>")
                    self.message(recipients, self.read_data())
                    self.reply("250 OK")
                elif verb in ("RSET", "NOOP"):
                    self.reply("250 OK")
                elif verb == "QUIT":
                    self.reply("221 bye")
                    return
                else:
                    self.reply("502 not implemented")

        def read_data(self):
            lines = []
            while True:
                line = self.rfile.readline(MAX_BODY)
                if not line or line in (b".\r\n", b".\n"):
                    return b"".join(lines)
                lines.append(line[1:] if line.startswith(b"..") else line)

        def message(self, recipients, data):
            headers = {}
            for raw in data.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace").splitlines():
                if ":" in raw and not raw[:1].isspace():
                    name, value = raw.split(":", 1)
                    headers.setdefault(name.strip().lower(), value.strip())
            out.line(
                "email %s %s delivery %s"
                % (
                    ",".join(recipients) or "-",
                    headers.get("subject", "-"),
                    headers.get("x-nrm-delivery", "-"),
                )
            )

    return Handler


class ThreadingTCP(socketserver.ThreadingMixIn, socketserver.TCPServer):
    allow_reuse_address = True
    daemon_threads = True


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--smtp-port", type=int, default=0, help="0: no SMTP sink")
    parser.add_argument("--log")
    args = parser.parse_args()
    out = Out(args.log)
    servers = [
        http.server.ThreadingHTTPServer(
            ("127.0.0.1", args.http_port), make_webhook_handler(secrets_of(args.config), out)
        )
    ]
    if args.smtp_port:
        servers.append(ThreadingTCP(("127.0.0.1", args.smtp_port), make_smtp_handler(out)))
    for s in servers:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    out.line("listening: webhooks http://127.0.0.1:%d/<subscription>%s" % (
        args.http_port, ", mail smtp://127.0.0.1:%d" % args.smtp_port if args.smtp_port else ""))
    stop.wait()
    os._exit(0)  # daemon threads and open connections go with the process


if __name__ == "__main__":
    sys.exit(main())
