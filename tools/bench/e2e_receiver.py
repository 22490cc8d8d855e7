#!/usr/bin/python3
"""The webhook receiver of tools/bench/e2e.sh (a benchmark tool, not a test).

    e2e_receiver.py --port PORT --log FILE     serve: answer every POST 204, log it
    e2e_receiver.py --load URL --seconds S --clients C
                                               load it alone: C keep-alive clients POST a
                                               small CloudEvent for S seconds; prints
                                               {"requests_per_s": R}

Serving, each POST appends one line to FILE: "RECEIVED_MS TYPE SUBJECT DELIVERY" (wall clock,
milliseconds with a fraction; TYPE and SUBJECT from the CloudEvents body; DELIVERY from
X-NRM-Delivery). GET /count answers the number of POSTs so far. Nothing is checked (the
signature is not verified): it is a sink whose own rate e2e.sh measures first."""
import argparse
import http.client
import http.server
import json
import threading
import time

lock = threading.Lock()
count = 0


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as libcurl and node's fetch use it

    def log_message(self, *args):
        pass

    def do_GET(self):
        body = str(count).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        global count
        length = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(length)
        received = time.time() * 1000
        try:
            event = json.loads(raw)
        except ValueError:
            event = {}
        line = "%.3f %s %s %s\n" % (received, event.get("type", "-"), event.get("subject", "-"),
                                     self.headers.get("X-NRM-Delivery", "-"))
        with lock:
            count += 1
            self.server.log.write(line)
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()


class Server(http.server.ThreadingHTTPServer):
    # the default listen backlog (5) drops the SYNs of a sender opening many connections at
    # once (notify opens up to notify.max_in_flight): they come back after TCP's 1 s and 3 s
    # retransmission, and the receiver, not the sender, would set the figures
    request_queue_size = 1024


def serve(port, log):
    server = Server(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    server.log = open(log, "a", buffering=1)
    server.serve_forever()


def load(url, seconds, clients):
    host_port = url.split("//", 1)[1].split("/", 1)[0]
    host, port = host_port.split(":")
    body = json.dumps({"specversion": "1.0", "type": "bench.load", "subject": "-"}).encode()
    done = [0] * clients
    stop = time.monotonic() + seconds

    def client(i):
        conn = http.client.HTTPConnection(host, int(port))
        while time.monotonic() < stop:
            conn.request("POST", "/load", body, {"Content-Type": "application/json"})
            conn.getresponse().read()
            done[i] += 1
        conn.close()

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps({"requests_per_s": round(sum(done) / (time.monotonic() - started), 1),
                      "clients": clients}))


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int)
    p.add_argument("--log")
    p.add_argument("--load")
    p.add_argument("--seconds", type=float, default=3)
    p.add_argument("--clients", type=int, default=8)
    a = p.parse_args()
    if a.load:
        load(a.load, a.seconds, a.clients)
    else:
        serve(a.port, a.log)
