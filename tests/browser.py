"""Headless Chromium for the browser checks (tests/test_docs_site.py, tests/test_jupyterlab.py).

`chromium_path()` finds Chromium, installing Debian's `chromium` with apt when it is missing; when that cannot be
done the calling test is skipped with the reason. `Chromium` starts it headless and drives one page through the
Chrome DevTools Protocol over a websocket (websocket-client, which jupyter-server already depends on). The browser
never reaches the network: every host name fails to resolve, so pages that reference CDN scripts load all the same.
"""
import base64, functools, json, os, shutil, signal, subprocess, tempfile, time, urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = ROOT / "screenshots"  # gitignored
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
CANDIDATES = ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable"]


def _works(exe):
    try: r = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired): return False
    return r.returncode == 0 and "chrom" in r.stdout.lower()


def _find():
    for name in ([os.environ["CHROMIUM"]] if os.environ.get("CHROMIUM") else []) + CANDIDATES:
        exe = shutil.which(name)
        if exe and _works(exe): return exe


def _apt(*args):
    "Run apt-get as root (directly, or through passwordless sudo); returns (ok, the end of its output)"
    if os.geteuid() == 0: pre = []
    elif shutil.which("sudo"): pre = ["sudo", "-n"]
    else: return False, "not root and no sudo"
    if not shutil.which("apt-get"): return False, "no apt-get"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try: r = subprocess.run(pre + ["apt-get", *args], capture_output=True, text=True, env=env, timeout=900)
    except subprocess.TimeoutExpired: return False, f"apt-get {' '.join(args)} timed out"
    return r.returncode == 0, (r.stdout + r.stderr).strip()[-400:]


@functools.cache
def _install():
    "Chromium's path, installing Debian's `chromium` when none is found; else (None, why)"
    if exe := _find(): return exe, ""
    print("\n[browser] Chromium not found: installing it with apt-get install -y chromium", flush=True)
    ok, msg = _apt("install", "-y", "-q", "chromium")
    if not ok:  # a fresh container has no package lists yet
        ok, msg = _apt("update", "-q")
        if ok: ok, msg = _apt("install", "-y", "-q", "chromium")
    if exe := _find(): return exe, ""
    return None, msg


def chromium_path():
    "Path of a working Chromium; skips the calling test, saying why, when none can be found or installed"
    exe, why = _install()
    if exe is None:
        msg = f"SKIPPED browser check: Chromium is missing and `apt-get install chromium` failed ({why})"
        print("\n" + msg, flush=True)
        pytest.skip(msg)
    return exe


class Chromium:
    "A headless Chromium with one page, driven through the DevTools protocol"
    def __init__(self, exe=None, width=1280, height=1000, timeout=60):
        import websocket  # websocket-client
        self.tmp = Path(tempfile.mkdtemp(prefix="rotvq-chromium-"))
        args = [exe or chromium_path(), *FLAGS, f"--user-data-dir={self.tmp}", "--remote-debugging-port=0",
                "--remote-debugging-address=127.0.0.1", f"--window-size={width},{height}", "--hide-scrollbars",
                "--no-first-run", "--no-default-browser-check", "--mute-audio", "--disable-extensions",
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",  # offline: no host name resolves
                "about:blank"]
        self.log = open(self.tmp / "chromium.log", "w+")
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        try:
            port_file, t0 = self.tmp / "DevToolsActivePort", time.monotonic()
            while not (port_file.exists() and port_file.read_text().strip()):
                if self.proc.poll() is not None or time.monotonic() - t0 > timeout:
                    raise RuntimeError(f"Chromium did not start: {self.output()}")
                time.sleep(0.1)
            port = int(port_file.read_text().split()[0])
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=timeout) as r:
                page = next(t for t in json.load(r) if t["type"] == "page")
            self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=timeout, suppress_origin=True)
            self.ids, self.events = iter(range(1, 1 << 30)), []
            self.send("Page.enable"); self.send("Runtime.enable")
            self.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
        except BaseException:
            self.close(); raise

    def output(self):
        self.log.flush(); self.log.seek(0)
        return self.log.read()[-2000:]

    def send(self, method, **params):
        "Call a DevTools method and return its result (events that arrive meanwhile are kept in self.events)"
        i = next(self.ids)
        self.ws.send(json.dumps(dict(id=i, method=method, params=params)))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == i:
                if "error" in msg: raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg: self.events.append(msg)

    def js(self, expr):
        "Evaluate a JavaScript expression in the page (promises awaited) and return its value"
        r = self.send("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r: raise RuntimeError(f"JS error in {expr[:80]!r}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def wait_for(self, expr, timeout=30, what=None, poll=0.25):
        "Poll a JavaScript expression until it is truthy; returns its value"
        t0 = time.monotonic()
        while True:
            try: v = self.js(expr)
            except RuntimeError: v = None  # e.g. the page is navigating
            if v: return v
            if time.monotonic() - t0 > timeout: raise TimeoutError(f"waited {timeout}s for {what or expr}")
            time.sleep(poll)

    def goto(self, url, timeout=30):
        "Open url and wait until the document has loaded (readyState complete)"
        r = self.send("Page.navigate", url=url)
        if r.get("errorText"): raise RuntimeError(f"could not open {url}: {r['errorText']}")
        self.wait_for(f"document.readyState === 'complete' && location.href.startsWith({json.dumps(url.split('?')[0])})",
                      timeout, what=f"{url} to load")

    def screenshot(self, path, full_page=False):
        "Save a PNG of the viewport (or of the whole page)"
        png = self.send("Page.captureScreenshot", format="png", captureBeyondViewport=full_page)["data"]
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(base64.b64decode(png))
        return Path(path)

    def click(self, x, y):
        for t in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=t, x=x, y=y, button="left", clickCount=1)

    def press(self, key="Enter", code=13, shift=False):
        "Press a key the way a keyboard does (shift: with Shift held)"
        mods = 8 if shift else 0
        if shift: self.send("Input.dispatchKeyEvent", type="rawKeyDown", key="Shift", code="ShiftLeft",
                            windowsVirtualKeyCode=16, modifiers=mods)
        kw = dict(key=key, code=key, windowsVirtualKeyCode=code, nativeVirtualKeyCode=code, modifiers=mods)
        self.send("Input.dispatchKeyEvent", type="rawKeyDown", **kw)
        if key == "Enter": self.send("Input.dispatchKeyEvent", type="char", text="\r", **kw)
        self.send("Input.dispatchKeyEvent", type="keyUp", **kw)
        if shift: self.send("Input.dispatchKeyEvent", type="keyUp", key="Shift", code="ShiftLeft",
                            windowsVirtualKeyCode=16, modifiers=0)

    def close(self):
        try: self.ws.close()
        except Exception: pass
        if self.proc.poll() is None:
            try: os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError: pass
            try: self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL); self.proc.wait(10)
        self.log.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self): return self
    def __exit__(self, *exc): self.close()
