// The console as a person uses it, with restspy's admin token set: the
// token is asked once and sent as a header (never in a URL), a request sent
// with curl appears in Live within a second, the filters narrow Live and
// History (and live in the URL), the keyboard moves and opens, the detail
// view shows the pretty JSON body, the headers, the timing, curl, and the
// redacted values as redacted (the secrets themselves appear nowhere).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { assertNoTrouble, curl, screenshot, sleep, startAll, stopAll } from './harness.mjs';

const TOKEN = 'browser-test-token';
const apiCalls = []; // every request of the page to the admin API

const t = {};
before(async () => {
  await startAll('console', { token: TOKEN }, t);
  t.page.on('request', (r) => {
    const u = new URL(r.url());
    if (u.pathname.startsWith('/api/') || u.pathname === '/flags') apiCalls.push({ url: r.url(), auth: r.headers()['authorization'] });
  });
});

after(() => stopAll(t));

// Sample traffic like the demo's (and the screenshots').
async function traffic(marker) {
  const json = ['-H', 'Content-Type: application/json'];
  await curl(`${t.proxy.url}/api/sites/`, '-X', 'POST', ...json, '-d',
    JSON.stringify({ slug: 'web-' + marker, name: 'Web', url: 'https://example.com', status: 'up' }));
  await curl(`${t.proxy.url}/api/sites/web-${marker}/metrics/`, '-X', 'POST', ...json, '-d',
    JSON.stringify({ name: 'latency_ms', value: 42.5 }));
  await curl(`${t.proxy.url}/api/sites/?m=${marker}`);
  await curl(`${t.proxy.url}/api/status/404/?m=${marker}`);
  await curl(`${t.proxy.url}/api/status/503/?m=${marker}`);
  await curl(`${t.proxy.url}/api/sites/web-${marker}/`, '-X', 'PATCH', ...json, '-d', '{"status":"degraded"}');
}

// Resolves once a Live/History row holding text is shown.
function rowWith(text, timeout = 5000) {
  return t.page.waitForFunction((t) => [...document.querySelectorAll('tr.row')].some((r) => r.textContent.includes(t)),
    text, { timeout, polling: 'raf' });
}

const rowTexts = () => t.page.$$eval('tr.row', (rows) => rows.map((r) => r.textContent));

test('the token is asked once, kept for the tab and sent as a header', async () => {
  // The page itself is served without the token; the API is not.
  const index = await fetch(t.proxy.admin + '/');
  assert.equal(index.status, 200);
  assert.match(index.headers.get('content-security-policy'), /script-src 'self'/);
  assert.equal((await fetch(t.proxy.admin + '/api/requests')).status, 401);

  await t.page.goto(t.proxy.admin + '/');
  const dialog = t.page.locator('#token-dialog');
  await dialog.waitFor({ state: 'visible' });
  await t.page.fill('#token-input', 'wrong-token');
  await t.page.press('#token-input', 'Enter');
  await t.page.waitForFunction(() => document.getElementById('token-why').textContent.includes('refused'));
  await t.page.fill('#token-input', TOKEN);
  const given = apiCalls.length;
  await t.page.press('#token-input', 'Enter');
  await t.page.waitForSelector('#status.ok', { timeout: 5000 }); // live: connected
  assert.equal(await dialog.isVisible(), false);
  assert.equal(await t.page.evaluate(() => sessionStorage.getItem('restspy.admin_token')), TOKEN);
  const since = apiCalls.slice(given);
  assert.ok(since.length >= 1 && since.every((c) => c.auth === 'Bearer ' + TOKEN), 'every call since carries the token');
  assert.ok(apiCalls.every((c) => !c.url.includes(TOKEN)), 'the token never goes into a URL');
  assert.ok(!t.page.url().includes(TOKEN));
  // A reload keeps it: not asked again.
  await t.page.reload();
  await t.page.waitForSelector('#status.ok', { timeout: 5000 });
  assert.equal(await dialog.isVisible(), false);
  assertNoTrouble(assert, t.page);
});

test('a request sent with curl appears in Live within a second', async () => {
  await t.page.goto(t.proxy.admin + '/#/live');
  await t.page.waitForSelector('#status.ok', { timeout: 5000 });
  const marker = 'fast' + Date.now();
  await curl(`${t.proxy.url}/api/status/201/?m=${marker}`);
  const sent = Date.now();
  await rowWith(marker, 1000);
  const took = Date.now() - sent;
  assert.ok(took < 1000, `shown after ${took} ms`);
  const row = t.page.locator('tr.row', { hasText: marker });
  assert.equal(await row.locator('td.status').textContent(), '201');
  assert.match(await row.locator('td.status').getAttribute('class'), /\bs2\b/);
  assert.equal(await row.locator('td.method').textContent(), 'GET');
  assert.equal(await row.locator('td.origin').textContent(), 'local');
  // Newest on top.
  await curl(`${t.proxy.url}/api/status/200/?m=${marker}-2`);
  await rowWith(marker + '-2');
  assert.match((await rowTexts())[0], new RegExp(marker + '-2'));
  // Pause holds new requests back; resume shows them.
  await t.page.keyboard.press('p');
  await curl(`${t.proxy.url}/api/status/200/?m=${marker}-paused`);
  await t.page.waitForFunction(() => document.getElementById('live-info').textContent.includes('1 waiting'));
  assert.ok(!(await rowTexts()).some((t) => t.includes(marker + '-paused')));
  await t.page.click('#pause');
  await rowWith(marker + '-paused');
  assertNoTrouble(assert, t.page);
});

// Two writes a peer replicated here, as the replicator stores them (the
// record's replication is its ledger outcome), one applied alike and one
// not: written into the proxy's store directly, there being no peer here.
function seedReplicated(marker) {
  const now = Date.now() * 1000;
  const rows = [['0190a0b0-0000-7000-8000-%s', 'same'], ['0190a0b0-0000-7000-8001-%s', 'diverged: status 201 -> 409']]
    .map(([id, outcome], i) => [id.replace('%s', String(now).slice(-12).padStart(12, '0')), outcome, i]);
  const py = `
import sqlite3, sys, json
db = sqlite3.connect(sys.argv[1], timeout=10)
for rid, outcome, i in json.loads(sys.argv[2]):
    db.execute("INSERT INTO requests (id, node, started_at, duration_us, method, scheme, path, query, "
               "status, origin, replication) VALUES (?, 'lyon', ?, 1200, 'POST', 'http', '/api/sites/', ?, "
               "?, 'replicated', ?)", (rid, int(sys.argv[3]) + i, 'm=' + sys.argv[4], 201 if i == 0 else 409, outcome))
    db.execute("INSERT INTO applied (message_id, origin, applied_at, status, state, outcome) "
               "VALUES (?, 'lyon', ?, ?, 'applied', ?)", (rid, int(sys.argv[3]) + i, 201 if i == 0 else 409, outcome))
db.commit()
`;
  execFileSync(process.env.PYTHON || '/usr/bin/python3',
    ['-c', py, path.join(t.proxy.dir, 'restspy.db'), JSON.stringify(rows), String(now), marker]);
}

test('the replication filter shows the writes that diverged', async () => {
  const m = 'div' + Date.now();
  seedReplicated(m);
  await curl(`${t.proxy.url}/api/status/200/?m=${m}-local`);
  await t.page.goto(`${t.proxy.admin}/#/history?q=${m}`);
  await rowWith(m + '-local');
  await rowWith('diverged: status 201 -> 409');
  assert.equal((await rowTexts()).length, 3);
  // Chosen in the bar: only the diverged one, and the URL says so.
  await t.page.selectOption('#f-replication', 'diverged');
  await t.page.waitForFunction(() => location.hash.includes('replication=diverged'));
  await t.page.waitForFunction(() => document.querySelectorAll('tr.row').length === 1);
  assert.equal(await t.page.textContent('tr.row td.repl'), 'diverged: status 201 -> 409');
  assert.equal(await t.page.textContent('tr.row td.origin'), 'replicated (lyon)');
  assert.ok(apiCalls.some((c) => c.url.includes('replication=diverged')), 'the filter goes to the API');
  // Back to any: all three again.
  await t.page.selectOption('#f-replication', '');
  await t.page.waitForFunction(() => document.querySelectorAll('tr.row').length === 3);
  assertNoTrouble(assert, t.page);
});

test('filters narrow Live and History and are carried in the URL', async () => {
  const m = 'flt' + Date.now();
  // Live with a status filter typed in the bar.
  await t.page.goto(t.proxy.admin + '/#/live');
  await t.page.waitForSelector('#status.ok');
  await t.page.keyboard.press('/');
  assert.equal(await t.page.evaluate(() => document.activeElement.id), 'f-q');
  await t.page.fill('#f-status', '4xx');
  await t.page.press('#f-status', 'Enter');
  await t.page.waitForFunction(() => location.hash === '#/live?status=4xx');
  await t.page.waitForSelector('#status.ok');
  await curl(`${t.proxy.url}/api/status/200/?m=${m}-ok`);
  await curl(`${t.proxy.url}/api/status/404/?m=${m}-nf`);
  await curl(`${t.proxy.url}/api/status/409/?m=${m}-last`); // after the 200: it would be there by now
  await rowWith(m + '-last');
  let texts = await rowTexts();
  assert.ok(texts.some((t) => t.includes(m + '-nf')));
  assert.ok(!texts.some((t) => t.includes(m + '-ok')), 'a 200 is not shown with status=4xx');
  assert.ok((await t.page.$$eval('tr.row td.status', (tds) => tds.map((td) => Number(td.textContent)))).every((s) => s >= 400 && s < 500));

  // History from a shared URL: method, path glob and the free text.
  await curl(`${t.proxy.url}/api/status/200/?m=${m}-post`, '-X', 'POST', '-d', '{}', '-H', 'Content-Type: application/json');
  await t.page.goto(`${t.proxy.admin}/#/history?method=POST&path=/api/status/*/&q=${m}`);
  await rowWith(m + '-post');
  texts = await rowTexts();
  assert.equal(texts.length, 1, texts.join('\n'));
  assert.equal(await t.page.inputValue('#f-method'), 'POST');
  assert.equal(await t.page.inputValue('#f-q'), m);
  // Without the method: the four of this test.
  await t.page.goto(`${t.proxy.admin}/#/history?q=${m}`);
  await rowWith(m + '-nf');
  assert.equal((await rowTexts()).length, 4);
  // A filter the API refuses says why.
  await t.page.goto(`${t.proxy.admin}/#/history?status=6xx`);
  await t.page.waitForSelector('#status.err');
  assert.match(await t.page.textContent('#status'), /bad value for status/);
  assertNoTrouble(assert, t.page);
});

test('History pages with Older', async () => {
  const m = 'page' + Date.now();
  for (let i = 0; i < 5; i++) await curl(`${t.proxy.url}/api/status/200/?m=${m}&i=${i}`);
  await t.page.goto(`${t.proxy.admin}/#/history?path=/api/status/200/`);
  await rowWith(`${m}&i=4`);
  const before = (await rowTexts()).length;
  if (await t.page.isVisible('#older')) {
    await t.page.click('#older');
    await t.page.waitForFunction((n) => document.querySelectorAll('tr.row').length > n, before);
  }
  const texts = await rowTexts();
  const ids = await t.page.$$eval('tr.row', (rows) => rows.map((r) => r.dataset.id));
  assert.equal(new Set(ids).size, ids.length, 'each request once');
  const mine = texts.filter((t) => t.includes(m)).map((t) => t.match(/i=(\d)/)[1]);
  assert.deepEqual(mine, ['4', '3', '2', '1', '0'], 'newest first');
});

test('the detail view: pretty JSON, headers, timing, redaction, curl; keyboard there and back', async () => {
  const m = 'det' + Date.now();
  await t.page.goto(t.proxy.admin + '/#/live');
  await t.page.waitForSelector('#status.ok');
  await traffic(m);
  await curl(`${t.proxy.url}/api/echo/login?m=${m}&token=tok-in-query-123`, '-X', 'POST',
    // X-Echo-Digest: the app answers digests, not the secrets it received.
    '-H', 'Content-Type: application/json', '-H', 'X-Echo-Digest: 1', '-H', 'Authorization: Bearer app-secret-456', '-H', 'Cookie: session=cookie-secret-789',
    '-d', JSON.stringify({ user: 'ada', password: 'hunter2-secret', profile: { langs: ['c', 'python'], admin: true, score: 9.5, manager: null } }));
  await rowWith('/api/echo/login');
  await screenshot(t.page, 'console-live.png');

  // j/k move, Enter opens: the newest row is the login.
  await t.page.locator('body').click({ position: { x: 5, y: 5 } });
  await t.page.keyboard.press('j');
  assert.match(await t.page.textContent('tr.row.sel'), /\/api\/echo\/login/);
  await t.page.keyboard.press('Enter');
  await t.page.waitForSelector('#req-body .json');
  await screenshot(t.page, 'console-detail.png');
  assert.match(t.page.url(), /#\/request\//);
  assert.match(await t.page.textContent('h2.title'), /POST \/api\/echo\/login/);

  // The request body as a tree: keys, typed values, folding.
  const req = t.page.locator('#req-body');
  assert.ok(await req.locator('.j-key', { hasText: '"user"' }).count());
  assert.equal(await req.locator('.j-str', { hasText: 'ada' }).first().textContent(), '"ada"');
  assert.equal(await req.locator('.j-num').first().textContent(), '9.5');
  assert.equal(await req.locator('.j-bool').first().textContent(), 'true');
  assert.equal(await req.locator('.j-null').first().textContent(), 'null');
  const node = req.locator('details.j-node').nth(1); // "profile"
  assert.equal(await node.evaluate((d) => d.open), true);
  await node.locator('> summary').click();
  assert.equal(await node.evaluate((d) => d.open), false);
  // Raw text a click away.
  await req.locator('button', { hasText: 'raw' }).click();
  assert.match(await req.locator('pre.text').textContent(), /"user":"ada"/);

  // Headers as tables.
  const reqHeaders = await t.page.$$eval('#req-headers tr', (trs) => trs.map((tr) => [tr.cells[0].textContent, tr.cells[1].textContent]));
  assert.ok(reqHeaders.some(([k, v]) => k === 'Content-Type' && v === 'application/json'), JSON.stringify(reqHeaders));
  assert.ok(await t.page.locator('#resp-headers tr').count() > 0);

  // Redacted values stay redacted, and are marked as such.
  const redacted = await t.page.$$eval('.redacted', (els) => els.map((e) => e.textContent));
  assert.ok(redacted.length >= 4, `header, cookie, query, body: ${redacted}`);
  assert.ok(redacted.every((t) => t === '[redacted]'));
  assert.equal(await t.page.locator('#req-headers tr', { hasText: 'Authorization' }).locator('.redacted').count(), 1);
  assert.equal(await req.locator('.j-str .redacted').count(), 1);
  const whole = await t.page.evaluate(() => document.body.innerText);
  for (const secret of ['hunter2-secret', 'app-secret-456', 'cookie-secret-789', 'tok-in-query-123'])
    assert.ok(!whole.includes(secret), secret + ' must not be shown');

  // The timing bar: upstream and restspy's own share.
  const widths = await t.page.$$eval('.timing-bar span', (s) => s.map((e) => parseFloat(e.style.width)));
  assert.equal(widths.length, 2);
  assert.ok(Math.abs(widths[0] + widths[1] - 100) < 0.1, String(widths));
  assert.match(await t.page.textContent('.legend'), /upstream .*restspy .*total/);

  // Copy as curl: the line `restspy export --curl` writes (the API's, not
  // the page's own): method, URL against this proxy, headers, body.
  const cmd = await t.page.textContent('#curl');
  assert.match(cmd, /^curl -sS -X POST /);
  assert.ok(cmd.includes(`-H 'Content-Type: application/json'`));
  assert.ok(cmd.includes(`--data-binary '{"user":"ada"`));
  assert.ok(cmd.includes(`'${t.proxy.url}/api/echo/login?m=${m}&token=[redacted]'`));
  assert.match(await t.page.textContent('.caveats'), /redacted/);

  // Download as HAR: the file of `restspy export --har`, fetched with the token.
  const [download] = await Promise.all([t.page.waitForEvent('download'), t.page.click('#download-har')]);
  assert.match(download.suggestedFilename(), /^restspy-[0-9a-f-]{36}\.har$/);
  const har = JSON.parse(await (await import('node:fs/promises')).readFile(await download.path(), 'utf8'));
  assert.equal(har.log.version, '1.2');
  assert.equal(har.log.entries.length, 1);
  assert.ok(har.log.entries[0].request.url.includes(`/api/echo/login?m=${m}`));

  // Esc goes back to the list.
  await t.page.keyboard.press('Escape');
  await t.page.waitForSelector('table.rows');
  assert.match(t.page.url(), /#\/live/);
  assertNoTrouble(assert, t.page);
});

test('the token can be forgotten; the next request asks again', async () => {
  await t.page.goto(t.proxy.admin + '/#/flags');
  await t.page.waitForSelector('#flag-log');
  await t.page.click('#forget');
  assert.equal(await t.page.evaluate(() => sessionStorage.getItem('restspy.admin_token')), null);
  await t.page.goto(t.proxy.admin + '/#/history');
  await t.page.locator('#token-dialog').waitFor({ state: 'visible' });
  await t.page.fill('#token-input', TOKEN);
  await t.page.press('#token-input', 'Enter');
  await t.page.waitForSelector('tr.row');
  await sleep(50);
  assertNoTrouble(assert, t.page);
});
