"""A small driver for headless Chromium over its DevTools protocol (Debian's chromium and
python3-websocket; no browser download). Used by the dashboard's browser tests."""
import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request

import websocket  # python3-websocket

CHROMIUM = os.environ.get('NRM_CHROMIUM', '/usr/bin/chromium')
FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync',
         '--disable-default-apps', '--disable-extensions', '--mute-audio', '--hide-scrollbars',
         '--remote-debugging-address=127.0.0.1', '--remote-debugging-port=0']


class BrowserError(Exception):
    pass


class Browser:
    """One Chromium process with one page; a fresh profile (no cookie survives it)."""

    def __init__(self, lang='en-GB', width=1366, height=900, log=None):
        self.profile = tempfile.mkdtemp(prefix='nrm-chromium-')
        self.log = log
        self.errors = []  # uncaught exceptions and console errors of the page
        args = [CHROMIUM] + FLAGS + [f'--user-data-dir={self.profile}', f'--lang={lang}', f'--accept-lang={lang}',
                                     f'--window-size={width},{height}', 'about:blank']
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL,
                                     stderr=log or subprocess.DEVNULL, start_new_session=True)
        port_file = os.path.join(self.profile, 'DevToolsActivePort')
        deadline = time.time() + 30
        while not (os.path.exists(port_file) and open(port_file).read().count('\n') >= 1):
            if self.proc.poll() is not None or time.time() > deadline:
                self.close()
                raise BrowserError('chromium did not start')
            time.sleep(0.1)
        port = int(open(port_file).read().split('\n')[0])
        targets = json.load(urllib.request.urlopen(f'http://127.0.0.1:{port}/json/list', timeout=10))
        page = next(t for t in targets if t.get('type') == 'page')
        self.ws = websocket.create_connection(page['webSocketDebuggerUrl'], timeout=30,
                                              suppress_origin=True)
        self.next_id = 0
        for domain in ('Page', 'Runtime', 'Log', 'Network'):
            self.send(f'{domain}.enable')
        self.send('Emulation.setLocaleOverride', locale=lang)
        ua = self.send('Browser.getVersion').get('userAgent', '').replace('HeadlessChrome', 'Chrome')
        self.send('Emulation.setUserAgentOverride', userAgent=ua, acceptLanguage=lang)
        self.viewport(width, height)

    # -- protocol --
    def _event(self, msg):
        m = msg.get('method')
        if m == 'Runtime.exceptionThrown':
            d = msg['params']['exceptionDetails']
            self.errors.append(d.get('exception', {}).get('description') or d.get('text'))
        elif m == 'Runtime.consoleAPICalled' and msg['params'].get('type') == 'error':
            self.errors.append(' '.join(str(a.get('value', a.get('description', ''))) for a in msg['params']['args']))
        elif m == 'Log.entryAdded' and msg['params']['entry'].get('level') == 'error':
            e = msg['params']['entry']
            self.errors.append(f"{e.get('source')}: {e.get('text')} {e.get('url', '')}")

    def send(self, method, **params):
        self.next_id += 1
        mid = self.next_id
        self.ws.send(json.dumps({'id': mid, 'method': method, 'params': params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get('id') == mid:
                if 'error' in msg:
                    raise BrowserError(f"{method}: {msg['error']}")
                return msg.get('result', {})
            self._event(msg)

    def pump(self, seconds=0.05):
        """Reads the events that arrived (console errors) for a moment."""
        self.ws.settimeout(seconds)
        try:
            while True:
                self._event(json.loads(self.ws.recv()))
        except websocket.WebSocketTimeoutException:
            pass
        finally:
            self.ws.settimeout(30)

    # -- page --
    def viewport(self, width, height, mobile=False, scale=1):
        self.send('Emulation.setDeviceMetricsOverride', width=width, height=height,
                  deviceScaleFactor=scale, mobile=mobile)

    def goto(self, url, timeout=20):
        self.send('Page.navigate', url=url)
        self.wait("document.readyState === 'complete'", timeout)

    def eval(self, expr):
        r = self.send('Runtime.evaluate', expression=expr, awaitPromise=True, returnByValue=True)
        if 'exceptionDetails' in r:
            raise BrowserError(f"eval {expr[:80]}: {r['exceptionDetails'].get('exception', {}).get('description')}")
        return r.get('result', {}).get('value')

    def wait(self, expr, timeout=10, interval=0.1):
        """Waits until the expression is truthy; returns its value, or None after timeout."""
        deadline = time.time() + timeout
        while True:
            try:  # an element found counts as true (a DOM node has no JSON value)
                v = self.eval(f"(() => {{ const v = ({expr}); return v instanceof Node ? true : v; }})()")
            except BrowserError:
                v = None
            if v:
                return v
            if time.time() > deadline:
                return None
            time.sleep(interval)

    def click(self, selector):
        """A real mouse click in the middle of the element (after scrolling it into view)."""
        box = self.eval(f"""(() => {{ const e = document.querySelector({json.dumps(selector)});
            if (!e) return null; e.scrollIntoView({{block: 'center', inline: 'center'}});
            const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; }})()""")
        if not box:
            raise BrowserError(f'no element {selector}')
        x, y = box
        for kind in ('mouseMoved', 'mousePressed', 'mouseReleased'):
            self.send('Input.dispatchMouseEvent', type=kind, x=x, y=y, button='left', clickCount=1)

    def type(self, selector, text):
        self.eval(f"document.querySelector({json.dumps(selector)}).focus()")
        self.send('Input.insertText', text=text)

    def key(self, key, keycode, shift=False):
        """A key pressed and released where the focus is (Tab moves it, Enter submits)."""
        mods = 8 if shift else 0
        text = '\r' if key == 'Enter' else ''
        self.send('Input.dispatchKeyEvent', type='keyDown' if text else 'rawKeyDown', key=key, code=key,
                  windowsVirtualKeyCode=keycode, modifiers=mods, text=text)
        self.send('Input.dispatchKeyEvent', type='keyUp', key=key, code=key, windowsVirtualKeyCode=keycode,
                  modifiers=mods)

    def screenshot(self, path):
        r = self.send('Page.captureScreenshot', format='png', captureBeyondViewport=True)
        with open(path, 'wb') as f:
            f.write(base64.b64decode(r['data']))

    def close(self):
        try:
            if getattr(self, 'ws', None):
                self.ws.close()
        except Exception:
            pass
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
