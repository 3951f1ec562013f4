"""JupyterLab as a user opens it (issue 17): `make lab` starts JupyterLab from the venv, the `babyvlm` kernel is listed,
and a notebook of nbs/ executes through the server's own kernel (REST + the kernel's websocket, as the browser does);
tqdm draws a widget bar there (ipywidgets installed) instead of warning `IProgress not found`."""
import datetime, json, os, signal, socket, subprocess, sys, time, urllib.request, uuid
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
VENV = Path(sys.executable).parent.parent   # the venv running the tests (the project's .venv under `make test`)
TOKEN = uuid.uuid4().hex


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


class Server:
    "JupyterLab started by `make lab` on a free port with a token; REST calls and kernel websockets against it."
    def __init__(self, log:Path, timeout:float=180):
        self.port = _free_port(); self.url = f'http://127.0.0.1:{self.port}'
        args = f'--no-browser --ip=127.0.0.1 --port={self.port} --ServerApp.port_retries=0 --IdentityProvider.token={TOKEN}'
        # -o: use the venv as it is (`make test` has just made it); the target itself is what a user runs
        cmd = ['make', '-s', '-C', str(ROOT), '-o', str(VENV/'.installed'), 'lab', f'VENV={VENV}', f'LAB_ARGS={args}']
        self.log = open(log, 'w')
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        t0 = time.time()
        while True:
            try:
                self.get('/api/status'); break
            except OSError:
                if self.proc.poll() is not None or time.time() - t0 > timeout:
                    self.close(); raise RuntimeError(f"`make lab` did not serve: {Path(log).read_text()[-3000:]}")
                time.sleep(0.5)

    def request(self, path:str, data:dict|None=None, method:str|None=None):
        req = urllib.request.Request(self.url + path, data=None if data is None else json.dumps(data).encode(), method=method,
                                     headers={'Authorization': f'token {TOKEN}', 'Content-Type': 'application/json'})
        with urllib.request.urlopen(req, timeout=60) as r:
            body = r.read().decode()
            return r.status, body

    def get(self, path:str): return json.loads(self.request(path)[1])

    def close(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)   # make and the server it started (its own process group)
            try: self.proc.wait(30)
            except subprocess.TimeoutExpired: os.killpg(self.proc.pid, signal.SIGKILL); self.proc.wait()
        self.log.close()


class Kernel:
    "One kernel of the server, driven over its websocket channel with the Jupyter messaging protocol (JSON messages)."
    def __init__(self, server:Server, kernel_id:str, timeout:float=600):
        import websocket
        self.session = uuid.uuid4().hex
        self.ws = websocket.create_connection(f'ws://127.0.0.1:{server.port}/api/kernels/{kernel_id}/channels?session_id={self.session}',
                                              header=[f'Authorization: token {TOKEN}'], timeout=timeout, suppress_origin=True)

    def execute(self, code:str) -> tuple[dict, list[dict]]:
        "Run `code`; return the execute_reply's content and the iopub outputs (stream, display_data, execute_result, error)."
        mid = uuid.uuid4().hex
        self.ws.send(json.dumps({'header': {'msg_id': mid, 'username': 'test', 'session': self.session, 'msg_type': 'execute_request',
                                            'version': '5.3', 'date': datetime.datetime.now(datetime.timezone.utc).isoformat()},
                                 'parent_header': {}, 'metadata': {}, 'channel': 'shell', 'buffers': [],
                                 'content': {'code': code, 'silent': False, 'store_history': True, 'user_expressions': {},
                                             'allow_stdin': False, 'stop_on_error': True}}))
        reply, outputs, idle = None, [], False
        while reply is None or not idle:
            m = json.loads(self.ws.recv())
            if m.get('parent_header', {}).get('msg_id') != mid: continue
            t = m['header']['msg_type']
            if m['channel'] == 'shell' and t == 'execute_reply': reply = m['content']
            elif t == 'status': idle = m['content']['execution_state'] == 'idle'
            elif t in ('stream', 'display_data', 'execute_result', 'error'): outputs.append({'type': t, **m['content']})
        return reply, outputs

    def close(self): self.ws.close()


@pytest.fixture(scope='module')
def lab(tmp_path_factory):
    if not (VENV/'bin'/'jupyter').exists(): pytest.skip(f"no jupyter in {VENV}")
    s = Server(tmp_path_factory.mktemp('lab')/'lab.log')
    yield s
    s.close()


def test_lab_serves_with_the_babyvlm_kernel(lab):
    "JupyterLab's page is served, the `babyvlm` kernel (the venv's interpreter) is listed, and the widget extension is installed."
    status, page = lab.request('/lab')
    assert status == 200 and 'JupyterLab' in page
    specs = lab.get('/api/kernelspecs')['kernelspecs']
    assert 'babyvlm' in specs, list(specs)
    argv = specs['babyvlm']['spec']['argv']
    assert Path(argv[0]).parent.parent == VENV and specs['babyvlm']['spec']['display_name'] == 'babyvlm'
    assert '@jupyter-widgets/jupyterlab-manager' in page   # ipywidgets' JupyterLab extension (tqdm's widget bars)


def _code_cells(nb_path:Path) -> list[str]:
    "The cells nbdev_test would run: code cells, less those marked `#| eval: false`."
    nb = json.loads(nb_path.read_text())
    cells = [''.join(c['source']) for c in nb['cells'] if c['cell_type'] == 'code']
    return [c for c in cells if not any(l.replace(' ', '') in ('#|eval:false', '#|eval:False') for l in c.splitlines())]


def test_notebook_executes_through_the_servers_kernel(lab):
    "nbs/00_core.ipynb runs top to bottom in a `babyvlm` kernel the server starts for it (a session, as Lab opens a notebook)."
    status, body = lab.request('/api/sessions', {'path': '00_core.ipynb', 'type': 'notebook', 'name': '00_core.ipynb',
                                                 'kernel': {'name': 'babyvlm'}}, 'POST')
    assert status == 201
    sess = json.loads(body)
    assert sess['kernel']['name'] == 'babyvlm'
    k = Kernel(lab, sess['kernel']['id'])
    try:
        reply, out = k.execute('import os, sys, babyvlm; print(os.getcwd()); print(sys.executable)')
        assert reply['status'] == 'ok', out
        text = ''.join(o.get('text', '') for o in out if o['type'] == 'stream')
        assert text.splitlines()[0] == str(ROOT/'nbs') and Path(text.splitlines()[1]).parent.parent == VENV   # the notebook's folder
        cells = _code_cells(ROOT/'nbs'/'00_core.ipynb')
        assert len(cells) > 10
        for i, code in enumerate(cells):
            reply, out = k.execute(code)
            assert reply['status'] == 'ok', (i, code[:300], [o for o in out if o['type'] == 'error'])
        # tqdm in a notebook: a widget bar (ipywidgets), no `IProgress not found` warning on stderr
        reply, out = k.execute('from tqdm.auto import tqdm\nfor _ in tqdm(range(3)): pass')
        assert reply['status'] == 'ok'
        assert any('application/vnd.jupyter.widget-view+json' in o.get('data', {}) for o in out), out
        assert not [o for o in out if o.get('name') == 'stderr'], out
    finally:
        k.close()
        lab.request(f"/api/sessions/{sess['id']}", method='DELETE')
