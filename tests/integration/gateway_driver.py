#!/usr/bin/python3
"""Drives a running nrm-gateway over HTTP, one behaviour per check ("ok - ..." lines).

Usage: gateway_driver.py BASE_URL WORK NRMCTL. Every agency of the configuration signs in
with the token "token-<id>"; WORK holds report.json, the configuration and outside.txt (a
file beside the static directory that must never be served)."""
import json
import os
import socket
import subprocess
import sys
import time
import urllib.parse
import uuid

from prometheus_client.parser import text_string_to_metric_families

import gateway_checks
from gateway_checks import check

BASE, WORK, NRMCTL = sys.argv[1:4]
URL = urllib.parse.urlparse(BASE)
def request(method, path, body=None, cookie=None, headers=None):
    """Returns (status, headers dict lower-cased, body bytes)."""
    return gateway_checks.request(URL, method, path, body, cookie, headers)


def as_json(raw):
    try:
        return json.loads(raw)
    except ValueError:
        return None


class Session:
    def __init__(self, agency, token=None):
        self.agency = agency
        status, self.headers, raw = request(
            "POST", "/api/v1/session",
            {"agencyId": agency, "token": token or "token-" + agency})
        self.status = status
        self.body = as_json(raw) or {}
        self.cookie = None
        for part in self.headers.get("set-cookie", "").split(";"):
            if part.strip().startswith("nrm_session="):
                self.cookie = part.strip()[len("nrm_session="):]
        self.csrf = self.body.get("csrfToken")

    def call(self, service, field, body, csrf=True, headers=None):
        h = dict(headers or {})
        if csrf is True:
            h["X-CSRF-Token"] = self.csrf
        elif csrf:
            h["X-CSRF-Token"] = csrf
        status, _, raw = request("POST", "/api/v1/%s/%s" % (service, field), body,
                                 self.cookie, h)
        return status, as_json(raw)


def metrics():
    status, hdrs, raw = request("GET", "/metrics")
    families = {f.name: f for f in text_string_to_metric_families(raw.decode())}
    return status, hdrs, families


def sample(families, name, **labels):
    """The value of the sample name{labels} in any family (prometheus_client names a counter's
    family without _total and a histogram's without _bucket, _count, _sum), or None."""
    for family in families.values():
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return None


class Sse:
    """A raw SSE connection over HTTP/1.0 (no chunking): events as dicts {id, event, data}."""

    def __init__(self, session, topics, last_id=None):
        self.sock = socket.create_connection((URL.hostname, URL.port), timeout=15)
        lines = ["GET /api/v1/events?topics=%s HTTP/1.0" % topics,
                 "Host: %s:%d" % (URL.hostname, URL.port),
                 "Cookie: nrm_session=" + session.cookie, "Accept: text/event-stream"]
        if last_id:
            lines.append("Last-Event-ID: " + last_id)
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            self.buf += chunk
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        head = head.decode().split("\r\n")
        self.status = int(head[0].split()[1]) if head and len(head[0].split()) > 1 else 0
        hdrs = {l.split(":", 1)[0].lower(): l.split(":", 1)[1].strip() for l in head[1:] if ":" in l}
        self.type = hdrs.get("content-type", "")
        self.events = []
        self.last_id = last_id
        self.sock.settimeout(0.5)
        self.closed = False

    def _line(self):
        """The next line, or None on a timeout or the end."""
        while b"\n" not in self.buf:
            if self.closed:
                return None
            try:
                chunk = self.sock.recv(65536)
            except (socket.timeout, TimeoutError):
                return None
            if not chunk:
                self.closed = True
                return None
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line.decode()

    def read(self, until, timeout_s):
        """Reads events until until(self.events) is true or timeout_s passes."""
        deadline = time.time() + timeout_s
        block = {}
        while time.time() < deadline and not until(self.events):
            line = self._line()
            if line is None:
                if self.closed:
                    break
                continue
            if not line:
                if "data" in block:
                    block["data"] = json.loads(block["data"])
                    self.events.append(block)
                    self.last_id = block.get("id", self.last_id)
                block = {}
            elif not line.startswith(":"):
                key, _, value = line.partition(": ")
                block[key] = value
        return self.events

    def drop(self):
        """Closes the connection abruptly, as a browser losing its network."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def tail(service, from_seq, prefixes):
    """Every event of service's stream from from_seq, as nrmctl reads it."""
    out = subprocess.run([NRMCTL, "--config", os.environ["NRM_CONFIG"], "tail", "--service",
                          service, "--from", str(from_seq), "--idle-exit", "2000"] + prefixes,
                         capture_output=True, text=True, timeout=60).stdout
    return [json.loads(l) for l in out.splitlines() if l.strip()]


def positions(last_id):
    return {k: int(v) for k, v in (p.split(":") for p in (last_id or "").split(",") if p)}


def wait_for(fn, timeout_s=20):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.3)
    return None


# --- health ------------------------------------------------------------------------------
check("/healthz answers 200 while the process runs", request("GET", "/healthz")[0] == 200)
ready = wait_for(lambda: request("GET", "/readyz")[0] == 200)
check("/readyz answers 200 when every service answers Ping with its database", ready)

# --- sign-in ------------------------------------------------------------------------------
wrong = Session("coordinator", "not-the-token")
check("a wrong token is 401", wrong.status == 401 and "error" in wrong.body)
check("... and sets no cookie", wrong.cookie is None)
unknown = Session("nobody-listed", "token-nobody-listed")
check("an unknown agency is 401", unknown.status == 401)
check("without a cookie GET /api/v1/session is 401",
      request("GET", "/api/v1/session")[0] == 401)
check("without a cookie an API call is 401",
      request("POST", "/api/v1/intake/list_cases", {})[0] == 401)

coordinator = Session("coordinator")
check("the coordinator signs in (200)", coordinator.status == 200)
check("... with its agency, type and a CSRF token",
      coordinator.body.get("agencyId") == "coordinator"
      and coordinator.body.get("agencyType") == "COORDINATOR"
      and len(coordinator.csrf or "") == 64)
cookie = coordinator.headers.get("set-cookie", "")
check("the session cookie is HttpOnly, SameSite=Strict, Path=/ and not Secure without TLS",
      "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
      and "Secure" not in cookie)
status, _, raw = request("GET", "/api/v1/session", cookie=coordinator.cookie)
check("GET /api/v1/session gives the same body", status == 200 and as_json(raw) == coordinator.body)

# --- positions before the scenario, from /metrics -------------------------------------------
status, hdrs, fam = metrics()
heads = {s: int(sample(fam, "nrm_stream_head", stream=s) or 0) for s in ("intake", "routing")}
start_id = ",".join("%s:%d" % kv for kv in heads.items())
sse1 = Sse(coordinator, "case.,referral.", start_id)
check("the coordinator opens the event stream (200, text/event-stream)",
      sse1.status == 200 and sse1.type.startswith("text/event-stream"))

police = Session("police-ma-06")
report = json.load(open(os.path.join(WORK, "report.json")))
cases_before = coordinator.call("intake", "list_cases", {})[1].get("caseList", {})
status, _ = police.call("intake", "submit_report", report, csrf=False)
check("a state-changing request without X-CSRF-Token is 403", status == 403)
status, _ = police.call("intake", "submit_report", report, csrf="0" * 64)
check("a state-changing request with a wrong X-CSRF-Token is 403", status == 403)
cases_after = coordinator.call("intake", "list_cases", {})[1].get("caseList", {})
check("... and no case was opened", "cases" in cases_before
      and len(cases_after.get("cases", [])) == len(cases_before.get("cases", [])))

key = str(uuid.uuid4())
status, reply = police.call("intake", "submit_report", report,
                            headers={"Idempotency-Key": key})
case_id = (reply or {}).get("caseRef", {}).get("caseId")
check("a report submitted through the JSON API is 200 with its case", status == 200 and case_id)
status, again = police.call("intake", "submit_report", report,
                            headers={"Idempotency-Key": key})
check("the same Idempotency-Key gets the same reply", status == 200 and again == reply)
status, table = coordinator.call("stats", "get_statistics",
                                 {"measure": "cases", "dimensions": ["region"]})
check("GetStatistics is reachable through the JSON API (200, a table with its k)",
      status == 200 and (table or {}).get("statisticsTable", {}).get("k") == 11)
status, _ = police.call("stats", "get_statistics", {"measure": "cases"})
check("... and an agency stats.readers does not name gets 403", status == 403)
status, reply = police.call("intake", "get_case", {"caseId": case_id, "noSuchField": 1})
check("an invalid request is 400 naming the field",
      status == 400 and reply.get("status") == "STATUS_INVALID_ARGUMENT"
      and reply.get("errorField") == "get_case.noSuchField")
status, _ = police.call("intake", "no_such_request", {})
check("an unknown request is 404", status == 404)


def referral_of_case():
    status, reply = coordinator.call("routing", "list_referrals", {"caseId": case_id})
    refs = (reply or {}).get("referralList", {}).get("referrals", [])
    return refs[0] if status == 200 and refs else None


referral = wait_for(referral_of_case)
check("routing made a referral for the case (read through the API)", referral)
referral = referral or {}

sse1.read(lambda evs: any(e["event"] == "referral.created" for e in evs), 20)
check("the event stream shows case.opened and referral.created live",
      any(e["event"] == "case.opened" for e in sse1.events)
      and any(e["event"] == "referral.created" for e in sse1.events))
check("each event id carries every stream's position",
      all(set(positions(e["id"])) == {"intake", "routing", "shelter", "notify", "stats"}
          for e in sse1.events))
dropped_at = sse1.last_id
sse1.drop()

provider = Session(referral.get("providerAgencyId", "missing"))
check("the referred provider signs in", provider.status == 200)
stranger = Session("police-ma-01")
status, _ = stranger.call("intake", "get_case", {"caseId": case_id})
check("a stranger's session gets 403 for another's case", status == 403)
status, _ = stranger.call("routing", "respond_to_referral",
                          {"referralId": referral.get("referralId", ""),
                           "decision": "REFERRAL_DECISION_ACCEPT"})
check("a stranger's session may not accept another's referral (403)", status == 403)
status, reply = provider.call("routing", "respond_to_referral",
                              {"referralId": referral.get("referralId", ""),
                               "decision": "REFERRAL_DECISION_ACCEPT"})
check("the provider accepts the referral through the JSON API (200)", status == 200)
accepted = wait_for(lambda: [e for e in tail("routing", 1, ["referral.accepted"])
                             if e.get("referralAccepted", {}).get("referralId")
                             == referral.get("referralId")], 10)
check("referral.accepted is on routing's stream", accepted)

# --- SSE resume: no gap, no duplicate --------------------------------------------------------
sse2 = Sse(coordinator, "case.,referral.", dropped_at)
sse2.read(lambda evs: any(e["event"] == "referral.accepted" for e in evs), 20)
sse2.read(lambda evs: False, 2)  # and anything else already there
sse2.drop()
seen = sse1.events + sse2.events
ids = [e["data"]["eventId"] for e in seen]
last = positions(sse2.last_id)
expected = []
for stream in ("intake", "routing"):
    expected += [e["eventId"] for e in tail(stream, heads[stream] + 1, ["case.", "referral."])
                 if int(e["seq"]) <= last.get(stream, 0)]
check("after a dropped connection, Last-Event-ID resumes with no duplicate",
      len(ids) == len(set(ids)))
check("... and no gap: every event of the streams since the start, exactly",
      sorted(ids) == sorted(expected) and len(expected) > 0)
check("... including what happened while disconnected",
      any(e["event"] == "referral.accepted" for e in sse2.events))

sse3 = Sse(coordinator, "case.opened", "intake:0,routing:0,shelter:0,notify:0")
sse3.read(lambda evs: len(evs) >= 2, 15)
sse3.read(lambda evs: False, 1.5)
sse3.drop()
check("a Last-Event-ID older than the gateway's start is caught up with Fetch, once each",
      len(sse3.events) == 2 and len({e["data"]["eventId"] for e in sse3.events}) == 2)
denied = Sse(police, "case.")
check("an agency that is not an event reader gets 403 for the event stream",
      denied.status == 403)
denied.drop()

# --- /metrics ------------------------------------------------------------------------------
status, hdrs, fam = metrics()
check("/metrics is 200 in the Prometheus text format",
      status == 200 and hdrs.get("content-type", "").startswith("text/plain; version=0.0.4"))
check("every service is up with its database",
      all(sample(fam, "nrm_service_up", service=s) == 1
          and sample(fam, "nrm_service_database_up", service=s) == 1
          for s in ("intake", "routing", "shelter", "notify")))
check("stream heads and service request counters are there",
      sample(fam, "nrm_stream_head", stream="intake") >= 2
      and sample(fam, "nrm_service_requests_total", service="routing") > 0)
check("consumer lag per stream is there",
      sample(fam, "nrm_consumer_lag", service="routing", stream="intake") is not None)
check("sign-in failures are counted: 3 x 401 on /api/v1/session",
      sample(fam, "nrm_gateway_http_requests_total", path="/api/v1/session", status="401") == 3)
check("submit_report is counted by status: 1 x 200 (and its repeat), 2 x 403",
      sample(fam, "nrm_gateway_http_requests_total", path="/api/v1/intake/submit_report",
             status="200") == 2
      and sample(fam, "nrm_gateway_http_requests_total", path="/api/v1/intake/submit_report",
                 status="403") == 2)
check("the latency histogram counts the same requests",
      sample(fam, "nrm_gateway_http_request_duration_seconds_count",
             path="/api/v1/intake/submit_report") == 4)
check("an unknown request is counted under /api/v1/other, not its own path",
      sample(fam, "nrm_gateway_http_requests_total", path="/api/v1/other", status="404") == 1)

def family_type(families, name):
    f = families.get(name)
    return f.type if f else None


def hist(families, kind):
    """intake's latency histogram of kind: ({le: cumulative count}, count, sum)."""
    buckets = {}
    for f in families.values():
        for s in f.samples:
            if s.labels.get("service") == "intake" and s.labels.get("kind") == kind:
                if s.name == "nrm_service_request_duration_seconds_bucket":
                    buckets[float(s.labels["le"])] = s.value
    count = sample(families, "nrm_service_request_duration_seconds_count", service="intake",
                   kind=kind) or 0
    total = sample(families, "nrm_service_request_duration_seconds_sum", service="intake",
                   kind=kind) or 0
    return buckets, count, total


check("the services' request latencies are a histogram family",
      family_type(fam, "nrm_service_request_duration_seconds") == "histogram")
before, count0, sum0 = hist(fam, "get_case")
for _ in range(3):
    police.call("intake", "get_case", {"caseId": case_id})
_, _, fam = metrics()
after, count1, sum1 = hist(fam, "get_case")
check("3 get_case requests add 3 to intake's get_case histogram (count and +Inf bucket)",
      count1 - count0 == 3 and after.get(float("inf"), 0) - before.get(float("inf"), 0) == 3)
check("... its sum grows and its buckets are cumulative, ending at the count",
      sum1 > sum0 and list(after.values()) == sorted(after.values())
      and after.get(float("inf")) == count1 and len(after) >= 5)

states = ("pending", "delivered", "failed", "undeliverable")


def deliveries_match():
    _, _, f = metrics()
    listed = {}
    for st in states:
        status, reply = coordinator.call("notify", "list_deliveries", {"state": st, "max": 500})
        if status != 200:
            return None
        listed[st] = len((reply or {}).get("deliveryList", {}).get("deliveries", []))
    scraped = {st: sample(f, "nrm_deliveries", service="notify", state=st) for st in states}
    return (f, listed) if scraped == listed and sum(listed.values()) > 0 else None


matched = wait_for(deliveries_match, 20)
check("deliveries by state are a gauge family", matched and family_type(matched[0], "nrm_deliveries") == "gauge")
check("nrm_deliveries{state} equals what list_deliveries lists in each state (some made)",
      matched is not None)
status, reply = coordinator.call("shelter", "get_occupancy", {"region": ""})
regions = sorted({sh["region"] for sh in (reply or {}).get("occupancy", {}).get("shelters", [])})


def waitlist_match():
    _, _, f = metrics()
    for r in regions:
        _, occ = coordinator.call("shelter", "get_occupancy", {"region": r})
        if sample(f, "nrm_waitlist_length", service="shelter", region=r) != \
                (occ or {}).get("occupancy", {}).get("waitlist", 0):
            return None
    return f


matched = wait_for(waitlist_match, 20)
check("waitlist length by region is a gauge equal to get_occupancy's waitlist of each region",
      regions and matched and family_type(matched, "nrm_waitlist_length") == "gauge")

# --- the configured regions ------------------------------------------------------------------
config = json.load(open(os.environ["NRM_CONFIG"]))
check("GET /api/v1/regions without a session is 401", request("GET", "/api/v1/regions")[0] == 401)
status, _, raw = request("GET", "/api/v1/regions", cookie=police.cookie)
check("GET /api/v1/regions lists the configured regions, codes and names, in order",
      status == 200 and as_json(raw) == {"regions": [{"code": r["code"], "name": r.get("name", "")}
                                                     for r in config["regions"]]})

# --- static files ------------------------------------------------------------------------
status, hdrs, raw = request("GET", "/")
check("GET / serves index.html as text/html",
      status == 200 and hdrs.get("content-type", "").startswith("text/html")
      and b"NRM test page" in raw)
check("... with Content-Security-Policy default-src 'self'",
      "default-src 'self'" in hdrs.get("content-security-policy", ""))
for path in ("/static/../outside.txt", "/static/%2e%2e/outside.txt", "/static/..%2foutside.txt",
             "/static//etc/passwd", "/static/./index.html", "/../outside.txt"):
    status, _, raw = request("GET", path)
    check("static path traversal %s is refused (404)" % path,
          status == 404 and b"secret outside" not in raw)

# --- sign-out and the sign-in limit --------------------------------------------------------
status, _, _ = request("DELETE", "/api/v1/session", cookie=police.cookie)
check("signing out without X-CSRF-Token is 403", status == 403)
status, _, _ = request("DELETE", "/api/v1/session", cookie=police.cookie,
                       headers={"X-CSRF-Token": police.csrf})
check("signing out is 200", status == 200)
check("... and the session is gone",
      request("GET", "/api/v1/session", cookie=police.cookie)[0] == 401)
for _ in range(5):
    Session("hotline-national", "wrong")
check("after 5 failed sign-ins an agency is limited for a minute (429, even the right token)",
      Session("hotline-national").status == 429)

sys.exit(1 if gateway_checks.failed else 0)
