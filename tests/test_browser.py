"""The study's report.html as a reader sees it: the tiny study's report opened in headless Chromium (issue 17).

Chromium is Debian's `chromium`; the set-up installs it with apt-get when it is missing and this runs as root (as CI
does), and otherwise skips saying why. The page is driven through the DevTools protocol over a websocket
(`websocket-client`, already a dependency of Jupyter's server): console messages, image decoding and the layout at a
laptop's width (1366 px) are read from the page itself, and a full-page screenshot `report.png` is written next to
the report for a person to look at.
"""
import base64, json, os, shutil, subprocess, tempfile, time, urllib.request
from pathlib import Path
import pytest

WIDTH, HEIGHT = 1366, 768   # a laptop screen
TITLE = 'BabyVLM on the embedded world'


def find_chromium() -> str:
    "The chromium executable; installed from Debian's packages when missing and root + apt-get are there, else a skip naming why."
    for name in ('chromium', 'chromium-browser'):
        if shutil.which(name): return shutil.which(name)
    if os.geteuid() != 0 or not shutil.which('apt-get'):
        pytest.skip("chromium is not installed and cannot be installed here (needs root and apt-get: "
                    "`apt-get install chromium` as root)")
    env = {**os.environ, 'DEBIAN_FRONTEND': 'noninteractive'}
    cmd = ['apt-get', 'install', '-y', '-q', '--no-install-recommends', 'chromium', 'fonts-dejavu-core']
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:   # the package lists may be missing or stale
        subprocess.run(['apt-get', 'update', '-qq'], capture_output=True, env=env)
        r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0 or not shutil.which('chromium'):
        pytest.skip(f"chromium could not be installed with apt-get: {(r.stderr or r.stdout).strip()[-500:]}")
    return shutil.which('chromium')


class Chromium:
    "A headless Chromium and one page, driven through the DevTools protocol; every protocol event is kept in `events`."
    def __init__(self, exe:str, width:int=WIDTH, height:int=HEIGHT, timeout:float=60):
        import websocket
        self.profile = tempfile.mkdtemp(prefix='babyvlm-chromium-')
        self.log = open(Path(self.profile)/'chromium.log', 'w')
        self.proc = subprocess.Popen([exe, '--headless', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage',
                                      '--no-first-run', '--no-default-browser-check', '--disable-extensions',
                                      '--remote-debugging-port=0', '--remote-allow-origins=*', f'--user-data-dir={self.profile}',
                                      f'--window-size={width},{height}', 'about:blank'],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        port_file, t0 = Path(self.profile)/'DevToolsActivePort', time.time()
        while not (port_file.exists() and port_file.read_text().strip()):
            if self.proc.poll() is not None or time.time() - t0 > timeout:
                self.close(); raise RuntimeError(f"chromium did not start: {(Path(self.profile)/'chromium.log').read_text()[-2000:]}")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        pages = json.loads(urllib.request.urlopen(f'http://127.0.0.1:{port}/json/list', timeout=timeout).read())
        url = next(p['webSocketDebuggerUrl'] for p in pages if p['type'] == 'page')
        self.ws = websocket.create_connection(url, timeout=timeout, suppress_origin=True)
        self.events, self._id = [], 0
        for domain in ('Page', 'Runtime', 'Log'): self.call(f'{domain}.enable')
        self.resize(width, height)

    def call(self, method:str, **params):
        "Send one command and return its result (events that arrive meanwhile go to `events`)."
        self._id += 1; mid = self._id
        self.ws.send(json.dumps({'id': mid, 'method': method, 'params': params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get('id') == mid:
                if 'error' in msg: raise RuntimeError(f"{method}: {msg['error']}")
                return msg['result']
            self.events.append(msg)

    def wait_for(self, event:str, timeout:float=120):
        "Wait until the protocol event `event` has arrived."
        t0 = time.time()
        while not any(e.get('method') == event for e in self.events):
            if time.time() - t0 > timeout: raise TimeoutError(event)
            self.events.append(json.loads(self.ws.recv()))

    def evaluate(self, js:str):
        "The value of the JavaScript expression `js` in the page (promises awaited)."
        r = self.call('Runtime.evaluate', expression=js, returnByValue=True, awaitPromise=True)
        if 'exceptionDetails' in r: raise RuntimeError(f"{js[:80]}...: {r['exceptionDetails']}")
        return r['result'].get('value')

    def errors(self) -> list[str]:
        "Console errors, uncaught exceptions and failed loads the page reported so far."
        out = []
        for e in self.events:
            m, p = e.get('method'), e.get('params', {})
            if m == 'Runtime.consoleAPICalled' and p['type'] in ('error', 'assert'):
                out.append('console.' + p['type'] + ': ' + ' '.join(str(a.get('value', a.get('description'))) for a in p['args']))
            elif m == 'Runtime.exceptionThrown':
                d = p['exceptionDetails']; out.append('exception: ' + (d.get('exception', {}).get('description') or d.get('text', '')))
            elif m == 'Log.entryAdded' and p['entry']['level'] == 'error':
                out.append(f"{p['entry']['source']}: {p['entry']['text']} {p['entry'].get('url', '')}".strip())
        return out

    def screenshot(self, path:Path):
        "Write a PNG of the whole page (its full height) to `path`."
        m = self.call('Page.getLayoutMetrics')['cssContentSize']
        r = self.call('Page.captureScreenshot', format='png', captureBeyondViewport=True,
                      clip={'x': 0, 'y': 0, 'width': m['width'], 'height': m['height'], 'scale': 1})
        Path(path).write_bytes(base64.b64decode(r['data']))
        return Path(path)

    def resize(self, width:int, height:int=HEIGHT):
        "Lay the page out for a window of `width` x `height` CSS pixels."
        self.call('Emulation.setDeviceMetricsOverride', width=width, height=height, deviceScaleFactor=1, mobile=False)

    def close(self):
        if getattr(self, 'ws', None) is not None: self.ws.close()
        self.proc.kill(); self.proc.wait(); self.log.close()
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self): return self
    def __exit__(self, *a): self.close()


# What the tests read off the page, measured in the page itself at WIDTH px
PAGE_JS = r"""(async () => {
  const imgs = [...document.images];
  await Promise.all(imgs.map(i => i.decode().catch(() => null)));
  const vw = document.documentElement.clientWidth;
  const scrolls = el => { for (let a = el.parentElement; a && a !== document.body; a = a.parentElement) {
      const o = getComputedStyle(a).overflowX;
      if ((o === 'auto' || o === 'scroll') && a.getBoundingClientRect().width <= vw + 1) return true; }
    return false; };
  const after = h => { const out = {tables: [], images: 0};   // what follows heading h up to the next h2
    const all = [...document.querySelectorAll('h2, table, img')]; let on = false;
    for (const el of all) { if (el === h) { on = true; continue; } if (!on) continue; if (el.tagName === 'H2') break;
      if (el.tagName === 'TABLE') out.tables.push(el.innerText.slice(0, 2000)); else out.images += 1; }
    return out; };
  const sections = {};
  for (const h of document.querySelectorAll('h2')) sections[h.textContent.replace('¶', '').trim()] = after(h);
  return {
    title: document.title,
    first_text: document.body.innerText.trim().slice(0, 200),
    first_heading: (document.querySelector('h1, h2, h3') || {}).textContent,
    text: document.body.innerText,
    images: imgs.map(i => ({src: i.src.slice(0, 40), natural_width: i.naturalWidth, natural_height: i.naturalHeight,
                            shown_width: i.getBoundingClientRect().width, complete: i.complete})),
    tables: [...document.querySelectorAll('table')].map(t => ({width: t.getBoundingClientRect().width, scrolls: scrolls(t),
                                                                head: t.innerText.slice(0, 60)})),
    stderr_boxes: document.querySelectorAll('[data-mime-type="application/vnd.jupyter.stderr"], .output_stderr').length,
    page_width: vw, scroll_width: document.documentElement.scrollWidth,
    sections: sections,
  };
})()"""


def page_report(browser:Chromium, html:Path, screenshot:Path|None=None) -> dict:
    "Open `html` in `browser`, wait for it to load, and return what PAGE_JS reads plus the errors; screenshot it if asked."
    browser.call('Page.navigate', url=Path(html).resolve().as_uri())
    browser.wait_for('Page.loadEventFired')
    r = browser.evaluate(PAGE_JS)
    r['errors'] = browser.errors()
    if screenshot is not None: r['screenshot'] = str(browser.screenshot(screenshot))
    return r


NARROW = 720   # a narrow window, where the wide tables must scroll in their own box


@pytest.fixture(scope='module')
def page(study):
    "What the tiny study's report.html shows in headless Chromium at a laptop's width and at a narrow one; the screenshot is written."
    exe = find_chromium()
    html = Path(study['study_dir'])/'report.html'
    with Chromium(exe) as b:
        r = page_report(b, html, html.with_name('report.png'))
        b.resize(NARROW)
        r['narrow'] = b.evaluate(PAGE_JS)
        r['narrow']['errors'] = b.errors()
    return r


def test_no_console_errors(page):
    "Nothing fails in the page: no console error, no uncaught exception, no resource that does not load (it is read offline)."
    assert page['errors'] == [] and page['narrow']['errors'] == []


def test_page_starts_with_the_title(page, study):
    "The first thing on the page is the study's title: no raw front matter, no warning box."
    assert page['title'] == f"BabyVLM study: {Path(study['study_dir']).name}"
    assert page['first_text'].startswith('BabyVLM on the embedded world: study'), page['first_text']
    assert page['first_heading'].startswith('BabyVLM on the embedded world')
    assert page['stderr_boxes'] == 0
    for s in ('skip_exec', 'Warning:', 'IProgress'): assert s not in page['text'], s
    # and at the source: the executed report notebook printed nothing on stderr (the reader would see it)
    nb = json.loads((Path(study['study_dir'])/'report.ipynb').read_text())
    err = [''.join(o['text'])[:300] for c in nb['cells'] for o in c.get('outputs', []) if o.get('name') == 'stderr']
    assert err == []


def test_images_decode(page):
    "Every image of the report decodes (the plots and sample trials are embedded PNGs)."
    assert len(page['images']) >= 6, page['images']
    for im in page['images']:
        assert im['complete'] and im['natural_width'] > 0 and im['natural_height'] > 0, im


def test_main_table_and_plots_are_there(page):
    "The main table lists every model of the tiny study; the plot sections each hold their figure."
    sec = page['sections']
    main = sec['Main table']['tables']
    assert main, sec.keys()
    for s in ('Labeled-S', 'VTWT', 'Wino group', 'chance', 'CVCL, home', 'BabyLLaVA-GPT2, home', 'BabyLLaVA-Llama, home',
              'CoCa hybrid, home', 'reference (upper bound)'):
        assert s in main[0], s
    for name in ('Per run', 'Per category', 'Sample trials', 'Training curves'):
        assert sec[name]['images'] >= 1, (name, sec[name])


def test_readable_at_laptop_width(page):
    """At 1366 px the page does not scroll sideways; a table wider than the window (there are some at 720 px) scrolls
    inside a box of its own that fits the window."""
    for r in (page, page['narrow']):
        assert r['scroll_width'] <= r['page_width'], (r['scroll_width'], r['page_width'])
        for t in r['tables']:
            assert t['width'] <= r['page_width'] or t['scrolls'], t
    assert any(t['width'] > NARROW for t in page['narrow']['tables'])   # the check above had something to check
    for im in page['images']: assert im['shown_width'] <= page['page_width'], im


def test_full_page_screenshot_next_to_the_report(page, study):
    "report.png beside report.html: the whole page at 1366 px, for a person to look at."
    from PIL import Image
    png = Path(study['study_dir'])/'report.png'
    assert page['screenshot'] == str(png)
    with Image.open(png) as im:
        w, h = im.size
        assert abs(w - page['page_width']) <= 20 and h > 3 * HEIGHT, im.size
        assert len(im.convert('L').resize((64, 256)).getcolors(256)) > 20   # not a blank page
