#!/usr/bin/python3
"""Drives a running nrm-gateway started with short limits, one behaviour per check ("ok - ...").

Usage: gateway_limits.py BASE_URL CONFIG PID. The gateway at BASE_URL (a loopback address) was
started from CONFIG with gateway.connection_timeout_s 2, max_connections_per_ip 8,
max_sse_clients 4 and session_ttl_s 20; PID is its process (sent SIGHUP after CONFIG is
rewritten). Every agency signs in with the token "token-<id>". Other source addresses of the
loopback network (127.0.0.x) stand for other machines."""
import http.client
import json
import os
import shutil
import signal
import socket
import sys
import threading
import time
import urllib.parse

import gateway_checks
from gateway_checks import check

BASE, CONFIG, PID = sys.argv[1], sys.argv[2], int(sys.argv[3])
URL = urllib.parse.urlparse(BASE)
TIMEOUT_S = 2     # gateway.connection_timeout_s
PER_IP = 8        # gateway.max_connections_per_ip
TTL_S = 20        # gateway.session_ttl_s
HEARTBEAT_S = 15  # GW_SSE_HEARTBEAT_S
LIMIT = 5         # GW_LOGIN_FAILURES
def connect(src):
    """A TCP connection to the gateway from address src (127.0.0.x)."""
    return socket.create_connection((URL.hostname, URL.port), timeout=10, source_address=(src, 0))


def request(method, path, body=None, cookie=None, headers=None, src="127.0.0.1", conn=None):
    """Returns (status, headers dict lower-cased, body bytes); status 0 when the connection was
    closed without an answer. conn: an HTTPConnection already connected."""
    try:
        return gateway_checks.request(URL, method, path, body, cookie, headers, src, conn)
    except (ConnectionError, http.client.HTTPException, OSError):
        return 0, {}, b""


class Session:
    def __init__(self, agency, token=None, src="127.0.0.1"):
        self.status, self.headers, raw = request(
            "POST", "/api/v1/session", {"agencyId": agency, "token": token or "token-" + agency},
            src=src)
        self.cookie = None
        for part in self.headers.get("set-cookie", "").split(";"):
            if part.strip().startswith("nrm_session="):
                self.cookie = part.strip()[len("nrm_session="):]
        try:
            self.csrf = json.loads(raw).get("csrfToken")
        except ValueError:
            self.csrf = None


def sign_in_status(agency, token):
    return Session(agency, token).status


def at_once(calls):
    """Runs the calls [(fn, args)] on their own threads, released together; their results."""
    results = [None] * len(calls)
    ready = threading.Barrier(len(calls))

    def run(i, fn, args):
        results[i] = fn(ready, *args)
    threads = [threading.Thread(target=run, args=(i, fn, args)) for i, (fn, args) in
               enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def sign_in_at(ready, agency, token, src):
    """One sign-in sent once every caller is connected: (status, headers)."""
    conn = http.client.HTTPConnection(URL.hostname, URL.port, timeout=30, source_address=(src, 0))
    conn.connect()
    ready.wait()
    status, hdrs, _ = request("POST", "/api/v1/session", {"agencyId": agency, "token": token},
                              conn=conn)
    return status, hdrs


class Stream:
    """GET /api/v1/events read by a thread: every chunk with its time, and when it closed."""

    def __init__(self, session, src="127.0.0.1"):
        self.sock = connect(src)
        self.sock.sendall(("GET /api/v1/events HTTP/1.0\r\nHost: %s:%d\r\nCookie: nrm_session=%s"
                           "\r\n\r\n" % (URL.hostname, URL.port, session.cookie)).encode())
        self.opened = time.time()
        self.chunks = []
        self.closed_at = None
        self.sock.settimeout(None)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError:
                data = b""
            if not data:
                self.closed_at = time.time()
                return
            self.chunks.append((time.time(), data))

    def text(self):
        return b"".join(d for _, d in self.chunks)

    def wait(self, until, timeout_s):
        deadline = time.time() + timeout_s
        while time.time() < deadline and not until(self):
            time.sleep(0.05)
        return until(self)

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def opened(stream):
    return b": connected" in stream.text() or stream.closed_at is not None


def ended(stream):
    return stream.closed_at is not None


def reload(config):
    """Writes config over CONFIG and sends the gateway SIGHUP."""
    with open(CONFIG + ".tmp", "w") as f:
        json.dump(config, f)
    os.replace(CONFIG + ".tmp", CONFIG)
    os.kill(PID, signal.SIGHUP)


config = json.load(open(CONFIG))
shutil.copy(CONFIG, CONFIG + ".orig")
logins = [login["agency_id"] for login in config["gateway"]["logins"]]

# --- an event stream outlives the connection timeout, and its session ----------------------
# (opened first: the other checks run while it waits for its heartbeat and its session's end)
long_session = Session("coordinator", src="127.0.0.5")
long_stream = Stream(long_session, src="127.0.0.5")

# --- idle connections ---------------------------------------------------------------------
def closed_after(sock):
    """Seconds until the gateway closes sock (None when it stays open 10 s)."""
    start = time.time()
    try:
        data = sock.recv(100)
    except socket.timeout:
        return None
    except OSError:
        data = b""
    sock.close()
    return time.time() - start if not data else None


elapsed = closed_after(connect("127.0.0.1"))
check("an idle connection is closed by the gateway once connection_timeout_s (2 s) has passed",
      elapsed is not None and TIMEOUT_S - 0.5 <= elapsed <= TIMEOUT_S + 3)
half = connect("127.0.0.1")
half.sendall(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n")
elapsed = closed_after(half)
check("... and so is one whose request headers never end",
      elapsed is not None and TIMEOUT_S - 0.5 <= elapsed <= TIMEOUT_S + 3)

# --- one address cannot take every connection -------------------------------------------------
held = [connect("127.0.0.3") for _ in range(80)]
time.sleep(0.5)
still_open = 0
for s in held:
    s.settimeout(0.05)
    try:
        still_open += 1 if s.recv(1) else 0
    except socket.timeout:
        still_open += 1
    except OSError:
        pass
status, _, _ = request("GET", "/healthz", src="127.0.0.4")
other = Session("police-ma-06", src="127.0.0.4")
for s in held:
    s.close()
check("of 80 idle connections from one address, max_connections_per_ip (8) stay open, the rest "
      "are closed at once", still_open == PER_IP)
check("... and meanwhile another address gets /healthz (200)", status == 200)
check("... and signs in (200)", other.status == 200)

# --- the sign-in limit holds for attempts made at once ----------------------------------------
agency = "police-ma-01"
first = [sign_in_status(agency, "wrong") for _ in range(LIMIT - 1)]
check("4 wrong tokens for an agency are 401 each", first == [401] * (LIMIT - 1))
burst = at_once([(sign_in_at, (agency, "wrong", "127.0.0.%d" % (20 + i))) for i in range(8)])
statuses = sorted(s for s, _ in burst)
check("then 8 wrong tokens at once: one is checked (401), 7 are refused unchecked (429), so no "
      "more than the limit (5) were ever checked", statuses == [401] + [429] * 7)
check("... and then even the right token is 429", sign_in_status(agency, "token-" + agency) == 429)

# --- made-up agency ids do not push a real agency's count out ---------------------------------
agency = "police-ma-04"
for _ in range(LIMIT):
    sign_in_status(agency, "wrong")
check("5 wrong tokens limit an agency: its right token is 429",
      sign_in_status(agency, "token-" + agency) == 429)
made_up = [sign_in_status("made-up-%d" % i, "wrong") for i in range(300)]
check("agency ids without a login share one count: the first 5 of 300 made-up ids are 401, "
      "the rest 429", made_up[:LIMIT] == [401] * LIMIT and set(made_up[LIMIT:]) == {429})
check("... and after 300 made-up ids the real agency is still limited (429 for its right token)",
      sign_in_status(agency, "token-" + agency) == 429)

# --- only a few tokens are checked at once ----------------------------------------------------
others = [a for a in logins if a not in ("coordinator", "police-ma-01", "police-ma-04",
                                         "police-ma-06")][:16]
burst = at_once([(sign_in_at, (a, "wrong", "127.0.0.%d" % (40 + i)))
                 for i, a in enumerate(others)])
statuses = [s for s, _ in burst]
busy = [h for s, h in burst if s == 503]
check("16 sign-ins at once for 16 agencies: some are checked (401), the others are turned "
      "away with 503", len(others) == 16 and set(statuses) == {401, 503} and statuses.count(401) >= 2)
check("... and every 503 says Retry-After: 1", busy and all(h.get("retry-after") == "1"
                                                           for h in busy))

# --- an event stream ends with its session -------------------------------------------------
session = Session("coordinator", src="127.0.0.6")
stream = Stream(session, src="127.0.0.6")
stream.wait(opened, 5)
time.sleep(1)
open_before = not ended(stream)
signed_out, _, _ = request("DELETE", "/api/v1/session", cookie=session.cookie,
                           headers={"X-CSRF-Token": session.csrf}, src="127.0.0.6")
start = time.time()
stream.wait(ended, 10)
check("an open event stream ends when its session signs out (within 3 s)",
      open_before and signed_out == 200 and ended(stream) and stream.closed_at - start <= 3)
stream.close()

# --- the first stream: past the connection timeout, ended with its session -----------------
long_stream.wait(ended, TTL_S + 10 - (time.time() - long_stream.opened))
beats = [t - long_stream.opened for t, d in long_stream.chunks if b": heartbeat" in d]
check("an event stream outlives connection_timeout_s: its heartbeat arrives after %d s"
      % HEARTBEAT_S, beats and beats[0] >= HEARTBEAT_S - 1)
check("... and it ends once its session expires (session_ttl_s 20, within 3 s)",
      ended(long_stream) and TTL_S - 1 <= long_stream.closed_at - long_stream.opened <= TTL_S + 3)
long_stream.close()
# --- an event stream ends when a reload takes event reading from its agency ---------------
session = Session("coordinator", src="127.0.0.7")
stream = Stream(session, src="127.0.0.7")
stream.wait(opened, 5)
time.sleep(1)
open_before = not ended(stream)
readers_taken = json.loads(json.dumps(config))
readers_taken.setdefault("security", {})["event_readers"] = {"agency_types": ["NGO"]}
reload(readers_taken)
start = time.time()
stream.wait(ended, 10)
check("an open event stream ends when a reload (SIGHUP) takes event reading from its agency "
      "(within 3 s)", open_before and ended(stream) and stream.closed_at - start <= 3)
stream.close()
shutil.copy(CONFIG + ".orig", CONFIG)
os.kill(PID, signal.SIGHUP)


def readable_again():
    s = Stream(session, src="127.0.0.7")
    s.wait(opened, 5)
    s.close()
    return b"200 OK" in s.text()


deadline = time.time() + 10
while time.time() < deadline and not readable_again():
    time.sleep(0.3)
check("... and the reload that gives it back lets it open a stream again", readable_again())

# --- streams opened at once share max_sse_clients (4) places --------------------------------
# the streams above end with their session (a stream whose reader has gone is noticed only at
# its next write)
request("DELETE", "/api/v1/session", cookie=session.cookie, headers={"X-CSRF-Token": session.csrf},
        src="127.0.0.7")


def sse_clients():
    _, _, raw = request("GET", "/metrics")
    for line in raw.decode().splitlines():
        if line.startswith("nrm_gateway_sse_clients "):
            return int(line.split()[1])
    return -1


deadline = time.time() + 10
while time.time() < deadline and sse_clients() != 0:
    time.sleep(0.2)
crowd = Session("coordinator", src="127.0.0.8")


def open_stream_at(ready, src):
    """One GET /api/v1/events sent once every caller is connected: its status, or 0."""
    sock = connect(src)
    ready.wait()
    sock.sendall(("GET /api/v1/events HTTP/1.0\r\nHost: %s:%d\r\nCookie: nrm_session=%s\r\n\r\n"
                  % (URL.hostname, URL.port, crowd.cookie)).encode())
    head = b""
    while b"\r\n" not in head:
        data = sock.recv(4096)
        if not data:
            break
        head += data
    time.sleep(1)  # every stream open at the same time
    sock.close()
    parts = head.split(b" ")
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


streams = at_once([(open_stream_at, ("127.0.0.%d" % (60 + i),)) for i in range(12)])
check("12 streams opened at once with 4 places and none open: exactly 4 are served (200), the "
      "others turned away (503)", sorted(streams) == [200] * 4 + [503] * 8)
request("DELETE", "/api/v1/session", cookie=crowd.cookie, headers={"X-CSRF-Token": crowd.csrf},
        src="127.0.0.8")
deadline = time.time() + 10
while time.time() < deadline and sse_clients() != 0:
    time.sleep(0.2)
check("... and their places are free again once their session ends", sse_clients() == 0)

os.remove(CONFIG + ".orig")

sys.exit(1 if gateway_checks.failed else 0)
