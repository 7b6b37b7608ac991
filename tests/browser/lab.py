"""Drive JupyterLab in headless Chromium the way a student meets the course (used by test_browser.py).

One JupyterLab server on 127.0.0.1 (random free port, random token) serves a temporary copy of
the notebooks (the repository's files are never touched; autosave is off as well), with the
JupyterLab app exposed to the page (``window.jupyterapp``) so the test can call its commands:
open a notebook, "Run All Cells", wait until every cell ran and the kernel is idle, then read the
notebook model (error outputs) and the DOM (images, widgets, bertviz's SVG).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

# Settings a student would not need, that make a headless run deterministic: no autosave, every
# cell in the DOM (no virtual scrolling), no news or update checks (they would go online).
USER_SETTINGS = {
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LabServer:
    """A JupyterLab server in a subprocess over a temporary root folder."""

    def __init__(self, notebooks: list[Path], workdir: Path, env: dict | None = None):
        # root/notebooks/ holds copies, root/data links to the repository's data/: the kernels
        # start in root/notebooks/, so paths relative to notebooks/ work as they do for students.
        self.root = workdir / "root"
        (self.root / "notebooks").mkdir(parents=True)
        for nb in notebooks:
            shutil.copy(nb, self.root / "notebooks" / nb.name)
        data = notebooks[0].resolve().parent.parent / "data" if notebooks else None
        if data is not None and data.is_dir():
            (self.root / "data").symlink_to(data)
        settings = workdir / "settings"
        for rel, values in USER_SETTINGS.items():
            path = settings / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values))
        self.port, self.token = free_port(), secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(workdir / "jupyterlab.log", "w")
        cmd = [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--ip=127.0.0.1",
            f"--port={self.port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root}",
            "--LabApp.expose_app_in_browser=True",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            f"--LabApp.user_settings_dir={settings}",
            f"--LabApp.workspaces_dir={workdir / 'workspaces'}",
            "--LabApp.extension_manager=readonly",
            "--ServerApp.terminals_enabled=False",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:  # CI containers run as root
            cmd.append("--allow-root")
        full_env = {
            **os.environ,
            "JUPYTER_RUNTIME_DIR": str(workdir / "runtime"),
            "PYDEVD_DISABLE_FILE_VALIDATION": "1",
            **(env or {}),
        }
        self.process = subprocess.Popen(
            cmd, stdout=self.log, stderr=subprocess.STDOUT, env=full_env, cwd=self.root
        )
        self._wait_ready()

    def _wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with {self.process.returncode}; see {self.log.name}")
            try:
                with urllib.request.urlopen(f"{self.url}/api/status?token={self.token}", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError(f"JupyterLab did not answer within {timeout:.0f} s; see {self.log.name}")

    def lab_url(self) -> str:
        return f"{self.url}/lab?token={self.token}&reset"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


# JavaScript run in the page. jupyterapp is the JupyterLab application (expose_app_in_browser);
# window.__courseNb is the notebook panel the test opened.
JS_APP_READY = (
    "() => !!(window.jupyterapp && window.jupyterapp.started && "
    "document.querySelector('#jp-main-dock-panel'))"
)

JS_OPEN = """async (path) => {
  // Each notebook meets the page as a fresh one would: forget require.js that an earlier
  // notebook's bertviz view loaded (JupyterLab itself does not use it).
  for (const name of ['require', 'requirejs', 'define']) { try { delete window[name]; } catch (e) {} }
  await jupyterapp.started;
  await jupyterapp.restored;
  const w = await jupyterapp.commands.execute('docmanager:open', {path: path, factory: 'Notebook'});
  w.node.setAttribute('data-course-notebook', path);
  window.__courseNb = w;
  window.__courseRun = null;
  await w.context.ready;
  await w.sessionContext.ready;
  return w.id;
}"""

JS_KERNEL_IDLE = """() => {
  const k = window.__courseNb.sessionContext.session && window.__courseNb.sessionContext.session.kernel;
  return !!(k && k.status === 'idle');
}"""

JS_RUN_ALL = """() => {
  const w = window.__courseNb;
  jupyterapp.shell.activateById(w.id);
  window.__courseRun = null;
  jupyterapp.commands.execute('notebook:run-all-cells').then(
    ok => { window.__courseRun = {ok: ok}; },
    err => { window.__courseRun = {ok: false, error: String(err)}; });
}"""

JS_RUN_CELL = """(index) => {
  const w = window.__courseNb;
  jupyterapp.shell.activateById(w.id);
  w.content.activeCellIndex = index;
  window.__courseRun = null;
  jupyterapp.commands.execute('notebook:run-cell').then(
    ok => { window.__courseRun = {ok: ok}; },
    err => { window.__courseRun = {ok: false, error: String(err)}; });
}"""

JS_DONE = """() => {
  const k = window.__courseNb.sessionContext.session && window.__courseNb.sessionContext.session.kernel;
  if (k && k.status === 'dead') {
    window.__courseRun = window.__courseRun || {ok: false, error: 'kernel died'}; return true;
  }
  return window.__courseRun !== null && !!k && k.status === 'idle';
}"""

# Every code cell: its index, execution count and outputs (the notebook model, as JSON).
JS_CELLS = """() => {
  const cells = window.__courseNb.content.model.cells;
  const out = [];
  for (let i = 0; i < cells.length; i++) {
    const c = cells.get(i);
    if (c.type !== 'code') continue;
    out.push({index: i, count: c.executionCount, outputs: c.outputs.toJSON(),
              source: c.sharedModel.getSource().slice(0, 80)});
  }
  return out;
}"""

JS_CLOSE = """async () => {
  const w = window.__courseNb;
  if (!w) return;
  await w.sessionContext.shutdown();
  w.context.model.dirty = false;
  w.dispose();
  window.__courseNb = null;
}"""
