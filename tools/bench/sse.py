#!/usr/bin/python3
"""SSE fan-out of the gateway: N clients on /api/v1/events while reports are submitted.

Usage: sse.py BASE_URL AGENCY TOKEN [CLIENTS=100] [SECONDS=20]
Signs in, opens CLIENTS event streams (one thread each), and counts the events every client
receives for SECONDS; prints events/s delivered in total and per client. Generate the load
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
url = urllib.parse.urlparse(base)
conn = http.client.HTTPConnection(url.hostname, url.port)
conn.request("POST", "/api/v1/session", json.dumps({"agencyId": agency, "token": token}),
             {"Content-Type": "application/json"})
resp = conn.getresponse()
resp.read()
cookie = [p for p in resp.getheader("Set-Cookie", "").split(";") if "nrm_session=" in p][0].strip()
counts = [0] * clients
stop = time.time() + seconds


def client(i):
    s = socket.create_connection((url.hostname, url.port))
    s.sendall(("GET /api/v1/events HTTP/1.0\r\nCookie: %s\r\n\r\n" % cookie).encode())
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
        counts[i] += buf.count(b"\nevent: ")
        buf = buf[buf.rfind(b"\n"):]
    s.close()


threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
for t in threads:
    t.start()
for t in threads:
    t.join()
total = sum(counts)
print(json.dumps({"clients": clients, "seconds": seconds, "events_delivered": total,
                  "events_per_s": round(total / seconds, 1),
                  "min_per_client": min(counts), "max_per_client": max(counts)}))
