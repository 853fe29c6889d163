"""JupyterLab is where the notebooks get written: start `jupyter lab` headless on loopback with a token, open
nbs/00_quantize.ipynb in headless Chromium, run its first code cells with Shift+Enter through the real kernel, and
check the prompts, the outputs and the kernel's namespace. A copy of the notebook is opened (JupyterLab autosaves), in
a temporary root with its own Jupyter config and workspaces. The screenshot goes to screenshots/ (not committed)."""
import ast, json, os, re, secrets, shutil, signal, socket, subprocess, sys, time, urllib.request, uuid
from pathlib import Path

import pytest
from browser import ROOT, SCREENSHOTS, Chromium, chromium_path

NB = "nbs/" + min(p.name for p in (ROOT / "nbs").glob("00_*.ipynb"))  # nbs/00_quantize.ipynb, or its successor
N_CODE = 4  # how many of its code cells to run


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]


class Lab:
    "A `jupyter lab` server in a temporary root holding a copy of NB"
    def __init__(self, tmp, timeout=90):
        self.root = tmp / "root"; (self.root / "nbs").mkdir(parents=True)
        shutil.copy2(ROOT / NB, self.root / NB)
        config = tmp / "config"  # settings: no news or update checks (the machine may be offline)
        s = config / "lab" / "user-settings" / "@jupyterlab" / "apputils-extension"
        s.mkdir(parents=True)
        (s / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
        self.port, self.token = free_port(), secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, JUPYTER_CONFIG_DIR=str(config), JUPYTER_RUNTIME_DIR=str(tmp / "runtime"),
                   IPYTHONDIR=str(tmp / "ipython"))
        self.log = open(tmp / "jupyter-lab.log", "w+")
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "jupyter"), "lab", "--no-browser", "--ip", "127.0.0.1",
             f"--port={self.port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={self.token}",
             f"--ServerApp.root_dir={self.root}", f"--LabApp.workspaces_dir={tmp / 'workspaces'}",
             "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"] + ["--allow-root"] * (os.geteuid() == 0),
            cwd=self.root, env=env, stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True)
        t0 = time.monotonic()
        while True:
            try:
                self.api("status"); break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() - t0 > timeout:
                    out = self.output(); self.close()
                    raise RuntimeError(f"jupyter lab did not answer /api/status:\n{out}")
                time.sleep(0.5)

    def api(self, path, method="GET"):
        req = urllib.request.Request(f"{self.url}/api/{path}", method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=10) as r:
            body = r.read()
        return json.loads(body) if body else None

    def output(self):
        self.log.flush(); self.log.seek(0)
        return self.log.read()[-3000:]

    def kernel_eval(self, kernel_id, expr, timeout=30):
        "Evaluate a Python expression in a running kernel (a second client on its websocket); returns its repr"
        import websocket
        ws = websocket.create_connection(
            f"ws://127.0.0.1:{self.port}/api/kernels/{kernel_id}/channels?token={self.token}", timeout=timeout)
        try:
            msg_id = uuid.uuid4().hex
            ws.send(json.dumps(dict(
                channel="shell", buffers=[], parent_header={}, metadata={},
                header=dict(msg_id=msg_id, msg_type="execute_request", username="test", session=uuid.uuid4().hex,
                            version="5.3"),
                content=dict(code="", silent=True, store_history=False, allow_stdin=False,
                             user_expressions={"x": expr}))))
            while True:
                m = json.loads(ws.recv())
                if m.get("msg_type") == "execute_reply" and m["parent_header"].get("msg_id") == msg_id:
                    r = m["content"]["user_expressions"]["x"]
                    assert r["status"] == "ok", r
                    return r["data"]["text/plain"]
        finally: ws.close()

    def close(self):
        "Shut the server and its kernels down; kill whatever is left"
        kids = []
        try:
            import psutil
            kids = psutil.Process(self.proc.pid).children(recursive=True)
        except Exception: pass
        if self.proc.poll() is None:
            try: self.api("shutdown", method="POST")
            except OSError: pass
            try: self.proc.wait(20)
            except subprocess.TimeoutExpired:
                try: os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError: pass
                self.proc.wait(10)
        for k in kids:  # kernels run in sessions of their own
            try: k.kill()
            except Exception: pass
        self.log.close()


@pytest.fixture
def lab(tmp_path):
    chromium_path()  # skip before starting anything if there is no browser
    t0 = time.monotonic()
    srv = Lab(tmp_path)
    print(f"\njupyter lab answered in {time.monotonic() - t0:.1f} s")
    yield srv
    srv.close()


def first_code_cells(n):
    "Index (among all cells) of the n-th code cell, and the names the first n code cells define at top level"
    cells, names, seen = json.loads((ROOT / NB).read_text())["cells"], set(), 0
    for i, c in enumerate(cells):
        if c["cell_type"] != "code": continue
        for node in ast.parse("".join(c["source"])).body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names |= {(a.asname or a.name).split(".")[0] for a in node.names} - {"annotations"}
            elif isinstance(node, (ast.FunctionDef, ast.ClassDef)): names.add(node.name)
            elif isinstance(node, ast.Assign): names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        seen += 1
        if seen == n: return i, names
    raise AssertionError(f"{NB} has fewer than {n} code cells")


PROMPTS = f"""[...document.querySelectorAll('.jp-NotebookPanel .jp-Notebook .jp-CodeCell')].slice(0, {N_CODE})
  .map(c => c.querySelector('.jp-InputPrompt').textContent.trim())"""


def test_run_first_cells_in_jupyterlab(lab):
    last, names = first_code_cells(N_CODE)
    t0 = time.monotonic()
    with Chromium(chromium_path(), height=1100) as b:
        try:
            b.goto(f"{lab.url}/lab/tree/{NB}?token={lab.token}", timeout=60)
            b.wait_for("document.querySelectorAll('.jp-NotebookPanel .jp-Notebook .jp-Cell').length > 0", 90,
                       what="the notebook to open in JupyterLab")
            t_open = time.monotonic() - t0
            t1, session = time.monotonic(), None
            while not (session and session["kernel"]["execution_state"] == "idle"):  # the kernel JupyterLab started
                assert time.monotonic() - t1 < 60, f"no idle kernel for {NB}: {lab.api('sessions')}"
                time.sleep(0.5)
                session = next((s for s in lab.api("sessions") if s["path"] == NB), None)
            b.wait_for("document.querySelector('.jp-NotebookPanel .jp-Notebook-cell') && "
                       "!document.querySelector('.jp-Dialog')", 30, what="JupyterLab without a dialog in the way")
            # click the first cell's prompt (command mode), then Shift+Enter down to the N_CODE-th code cell
            x, y = b.js("""(() => { const r = document.querySelector('.jp-NotebookPanel .jp-Notebook .jp-Cell')
                .querySelector('.jp-InputPrompt').getBoundingClientRect(); return [r.x + r.width / 2, r.y + 5]; })()""")
            b.click(x, y)
            for _ in range(last + 1):
                b.press("Enter", shift=True); time.sleep(0.3)
            prompts = b.wait_for(f"(p => p.every(t => /^\\[\\d+\\]:$/.test(t)) && p)({PROMPTS})", 90,
                                 what=f"the first {N_CODE} code cells to run")
            t_run = time.monotonic() - t0 - t_open  # waiting for the kernel, then running the cells
            b.js("document.querySelector('.jp-NotebookPanel .jp-Notebook .jp-CodeCell').scrollIntoView({block: 'center'})")
            time.sleep(0.5)  # let JupyterLab lay out the cells scrolled in
            errors = b.js("""[...document.querySelectorAll('.jp-NotebookPanel .jp-OutputArea-output')]
                .map(o => o.textContent).filter(t => /Traceback|Error:/.test(t))""")
        finally:
            shot = b.screenshot(SCREENSHOTS / f"jupyterlab_{Path(NB).stem}.png")
    print(f"\nnotebook open in {t_open:.1f} s, kernel started and {N_CODE} code cells run in {t_run:.1f} s; "
          f"prompts {prompts}; screenshot {shot}")
    assert sorted(int(p[1:-2]) for p in prompts) == list(range(1, N_CODE + 1)), prompts
    assert not errors, errors
    kernel = lab.api(f"kernels/{session['kernel']['id']}")
    assert kernel["execution_state"] == "idle" and kernel["name"] == "python3", kernel
    defined = ast.literal_eval(lab.kernel_eval(kernel["id"], f"sorted(n for n in {sorted(names)!r} if n in globals())"))
    assert defined == sorted(names), f"the kernel lacks names the cells define: {set(names) - set(defined)}"
