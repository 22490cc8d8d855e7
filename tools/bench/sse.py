#!/usr/bin/python3
"""SSE fan-out of the gateway: N clients on /api/v1/events while reports are submitted.

Usage: sse.py BASE_URL AGENCY TOKEN [CLIENTS=100] [SECONDS=20] [LAST_EVENT_ID]
Signs in, opens CLIENTS event streams (one thread each), and counts the events every client
receives for SECONDS; prints events/s delivered in total and per client, and busy_s, the time
from the start to the last event any client received (with LAST_EVENT_ID, for example
"intake:0,routing:0,shelter:0,notify:0", every client first catches up from there: the events
delivered over busy_s is then the gateway's fan-out rate, not the rate events were made). Generate the load
separately (tools/bench/sse.sh submits reports with nrmctl while this runs)."""
import http.client
import json
import socket
import sys
import threading
import time
import urllib.parse

base, agency, token = sys.argv[1:4]
clients = int(sys.argv[4]) if len(sys.argv) > 4 else 100
seconds = float(sys.argv[5]) if len(sys.argv) > 5 else 20
last_event_id = sys.argv[6] if len(sys.argv) > 6 else ""
url = urllib.parse.urlparse(base)
conn = http.client.HTTPConnection(url.hostname, url.port)
conn.request("POST", "/api/v1/session", json.dumps({"agencyId": agency, "token": token}),
             {"Content-Type": "application/json"})
resp = conn.getresponse()
resp.read()
cookie = [p for p in resp.getheader("Set-Cookie", "").split(";") if "nrm_session=" in p][0].strip()
counts = [0] * clients
last_at = [0.0] * clients
start = time.time()
stop = start + seconds


def client(i):
    s = socket.create_connection((url.hostname, url.port))
    resume = "Last-Event-ID: %s\r\n" % last_event_id if last_event_id else ""
    s.sendall(("GET /api/v1/events HTTP/1.0\r\nCookie: %s\r\n%s\r\n" % (cookie, resume)).encode())
    s.settimeout(0.5)
    buf = b""
    while time.time() < stop:
        try:
            chunk = s.recv(1 << 16)
        except socket.timeout:
            continue
        if not chunk:
            break
        buf += chunk
        n = buf.count(b"\nevent: ")
        if n:
            counts[i] += n
            last_at[i] = time.time() - start
        buf = buf[buf.rfind(b"\n"):]
    s.close()


threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
for t in threads:
    t.start()
for t in threads:
    t.join()
total = sum(counts)
busy = max(last_at) or seconds
print(json.dumps({"clients": clients, "seconds": seconds, "events_delivered": total,
                  "events_per_s": round(total / seconds, 1), "busy_s": round(busy, 2),
                  "events_per_busy_s": round(total / busy, 1),
                  "min_per_client": min(counts), "max_per_client": max(counts)}))
