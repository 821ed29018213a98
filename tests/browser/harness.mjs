// harness: what a browser test of the console needs, the node counterpart
// of tests/integration/harness.py (App, Proxy): the sitemon sample app and
// a restspy in front of it, each on free 127.0.0.1 ports with its files in
// a temp dir, ready when start() returns; stop() fails on a non-zero exit or
// a sanitizer report. Then chromium (Debian's, through playwright-core:
// nothing is downloaded) with a page that records what must never happen:
// a script error, a dialog, a CSP violation, a call of window.__xss.
// Environment: RESTSPY_BIN (default build/restspy), PYTHON (with Django,
// default /usr/bin/python3), CHROMIUM (default /usr/bin/chromium),
// SCREENSHOTS (where screenshots go; none when unset), KEEP_TMP=1.
import { spawn, execFile } from 'node:child_process';
import { mkdtempSync, openSync, readFileSync, rmSync, existsSync, mkdirSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const RESTSPY = process.env.RESTSPY_BIN || path.join(REPO, 'build', 'restspy');
const PYTHON = process.env.PYTHON || '/usr/bin/python3';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SANITIZER = ['ERROR: AddressSanitizer', 'ERROR: LeakSanitizer', 'SUMMARY: UndefinedBehaviorSanitizer', 'runtime error:'];

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function tmpdir(prefix) {
  return mkdtempSync(path.join(os.tmpdir(), 'restspy-browser-' + prefix + '-'));
}

export function removeTmp(dir) {
  if (!process.env.KEEP_TMP) rmSync(dir, { recursive: true, force: true });
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

// GET url until it answers one of ok, or timeout ms (false), or the
// process exits (false).
async function waitHttp(url, { headers = {}, timeout = 15000, proc = null, ok = [200] } = {}) {
  const deadline = Date.now() + timeout;
  while (Date.now() < deadline) {
    if (proc && proc.exitCode !== null) return false;
    try {
      const r = await fetch(url, { headers, signal: AbortSignal.timeout(2000) });
      await r.arrayBuffer();
      if (ok.includes(r.status)) return true;
    } catch (e) {
      /* not up yet */
    }
    await sleep(50);
  }
  return false;
}

function exited(proc, ms) {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    proc.once('exit', () => {
      clearTimeout(t);
      resolve(true);
    });
  });
}

export class App {
  constructor(dir) {
    this.dir = dir;
  }

  get url() {
    return `http://127.0.0.1:${this.port}`;
  }

  async start() {
    this.port = await freePort();
    const out = openSync(path.join(this.dir, 'app.out'), 'a');
    this.proc = spawn(PYTHON, [path.join(REPO, 'examples', 'sitemon', 'server.py'), `127.0.0.1:${this.port}`], {
      cwd: path.join(REPO, 'examples', 'sitemon'),
      env: { ...process.env, SITEMON_DB: path.join(this.dir, 'app.db') },
      stdio: ['ignore', out, out],
    });
    if (!(await waitHttp(this.url + '/api/status/200/', { timeout: 30000, proc: this.proc }))) {
      await this.stop();
      throw new Error('the sample app did not start:\n' + readFileSync(path.join(this.dir, 'app.out'), 'utf8'));
    }
    return this;
  }

  async stop() {
    if (!this.proc || this.proc.exitCode !== null) return;
    this.proc.kill('SIGTERM');
    if (!(await exited(this.proc, 5000))) this.proc.kill('SIGKILL');
  }
}

export class Proxy {
  // args: more command-line options; token: the admin token (none: null).
  constructor(dir, upstream, { args = [], token = null } = {}) {
    Object.assign(this, { dir, upstream, args, token });
    this.stderrPath = path.join(dir, 'proxy.stderr');
  }

  get url() {
    return `http://127.0.0.1:${this.port}`;
  }

  get admin() {
    return `http://127.0.0.1:${this.adminPort}`;
  }

  authHeaders() {
    return this.token ? { Authorization: 'Bearer ' + this.token } : {};
  }

  async start() {
    if (!existsSync(RESTSPY)) throw new Error(`restspy binary not found: ${RESTSPY} (set RESTSPY_BIN)`);
    this.port = await freePort();
    this.adminPort = await freePort();
    const cmd = ['proxy', '--listen', `127.0.0.1:${this.port}`, '--upstream', this.upstream,
      '--store', 'sqlite:' + path.join(this.dir, 'restspy.db'), '--log', path.join(this.dir, 'access.log'),
      '--admin', `127.0.0.1:${this.adminPort}`, '--workers', '2', '--node', 'test'];
    if (this.token) cmd.push('--admin-token', this.token);
    const err = openSync(this.stderrPath, 'a');
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('RESTSPY_')));
    this.proc = spawn(RESTSPY, cmd.concat(this.args), { cwd: this.dir, env, stdio: ['ignore', err, err] });
    if (!(await waitHttp(this.admin + '/healthz', { headers: this.authHeaders(), proc: this.proc }))) {
      await this.stop().catch(() => {});
      throw new Error('restspy did not start:\n' + this.stderr());
    }
    return this;
  }

  stderr() {
    return existsSync(this.stderrPath) ? readFileSync(this.stderrPath, 'utf8') : '';
  }

  // SIGTERM; throws unless restspy exits 0 with no sanitizer report.
  async stop() {
    if (!this.proc) return;
    if (this.proc.exitCode === null && this.proc.signalCode === null) {
      this.proc.kill('SIGTERM');
      if (!(await exited(this.proc, 20000))) {
        this.proc.kill('SIGKILL');
        throw new Error('restspy did not exit within 20 s of SIGTERM');
      }
    }
    const text = this.stderr();
    const found = SANITIZER.find((m) => text.includes(m));
    if (this.proc.exitCode !== 0 || found)
      throw new Error(`restspy exited with ${this.proc.exitCode}${found ? ', ' + found : ''}:\n${text.slice(-6000)}`);
  }

  // The admin API as a tool uses it (with the token).
  async api(p) {
    const r = await fetch(this.admin + p, { headers: this.authHeaders() });
    if (!r.ok) throw new Error(`GET ${p}: ${r.status} ${await r.text()}`);
    return r.json();
  }
}

// A request through the proxy with curl, as a person would send it.
// args: curl's arguments after the URL. Resolves with curl's stdout.
export function curl(url, ...args) {
  return new Promise((resolve, reject) => {
    execFile('curl', ['-sS', '--max-time', '10', '--path-as-is', url, ...args], { encoding: 'latin1' }, (e, out, err) =>
      e ? reject(new Error(`curl ${url}: ${err || e.message}`)) : resolve(out));
  });
}

// Chromium, and pages that record what must not happen.
export async function browser() {
  if (!existsSync(CHROMIUM)) throw new Error(`chromium not found at ${CHROMIUM} (scripts/install-deps installs it; or set CHROMIUM)`);
  return chromium.launch({ executablePath: CHROMIUM, args: ['--no-proxy-server'] });
}

// A page whose bad events land in page.trouble: page errors, dialogs
// (dismissed), CSP violations and window.__xss() calls (the payloads of
// the XSS tests call it).
export async function newPage(b) {
  const context = await b.newContext({ viewport: { width: 1360, height: 820 } });
  const page = await context.newPage();
  page.setDefaultTimeout(8000);
  page.trouble = [];
  page.on('pageerror', (e) => page.trouble.push('page error: ' + e.message));
  page.on('dialog', (d) => {
    page.trouble.push('dialog: ' + d.message());
    d.dismiss().catch(() => {});
  });
  await page.exposeFunction('__xssReport', (what) => page.trouble.push('script ran: ' + what));
  await page.addInitScript(() => {
    window.__xss = (what) => window.__xssReport(String(what));
    document.addEventListener('securitypolicyviolation', (e) =>
      window.__xssReport(`CSP violation: ${e.violatedDirective} ${e.blockedURI}`));
  });
  return page;
}

export async function screenshot(page, name) {
  const dir = process.env.SCREENSHOTS;
  if (!dir) return;
  mkdirSync(dir, { recursive: true });
  await page.screenshot({ path: path.join(dir, name) });
}

// Fails the test unless nothing bad happened on page.
export function assertNoTrouble(assert, page) {
  assert.deepStrictEqual(page.trouble, [], 'the page must have run nothing it should not');
}

// What each test file starts in its before() hook: a temp dir, the sample
// app, a restspy in front of it (proxyOpts as Proxy's), chromium and a page.
// Fields are set as they start, so stopAll() after a failed start stops
// what did start.
export async function startAll(prefix, proxyOpts, into) {
  into.dir = tmpdir(prefix);
  into.app = await new App(into.dir).start();
  into.proxy = await new Proxy(into.dir, into.app.url, proxyOpts).start();
  into.browser = await browser();
  into.page = await newPage(into.browser);
  return into;
}

// The after() hook: closes the browser, stops the app, then restspy (which
// fails on a bad exit or a sanitizer report) and removes the temp dir.
export async function stopAll(t) {
  if (t.browser) await t.browser.close();
  if (t.app) await t.app.stop();
  try {
    if (t.proxy) await t.proxy.stop();
  } finally {
    if (t.dir) removeTmp(t.dir);
  }
}
