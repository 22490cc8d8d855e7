"""What the gateway's test drivers (gateway_driver.py, gateway_limits.py) share: TAP-like checks
and one HTTP request to the gateway at a base URL."""
import http.client
import json

failed = 0


def check(name, condition):
    """Prints "ok - name" or "not ok - name" and counts the failures (failed)."""
    global failed
    if condition:
        print("ok - " + name, flush=True)
    else:
        failed += 1
        print("not ok - " + name, flush=True)


def request(url, method, path, body=None, cookie=None, headers=None, src=None, conn=None):
    """Sends one request to the gateway at url (urllib.parse result): body as JSON, cookie as the
    session, from address src when given, on conn when given (an HTTPConnection, closed after).
    Returns (status, headers dict lower-cased, body bytes); a connection error raises."""
    conn = conn or http.client.HTTPConnection(
        url.hostname, url.port, timeout=15, source_address=(src, 0) if src else None)
    h = dict(headers or {})
    if cookie:
        h["Cookie"] = "nrm_session=" + cookie
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        h["Content-Type"] = "application/json"
    try:
        conn.request(method, path, body=data, headers=h)
        resp = conn.getresponse()
        out = resp.read()
    finally:
        conn.close()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, out
