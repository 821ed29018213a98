// What the console must never do with captured data: run it. Requests
// carry <script>, "><img src=x onerror=...> and javascript: URLs in the
// path, the query, a header, a JSON body and an HTML response; Live,
// History and the detail view show them as text, and nothing runs: no
// window.__xss() call, no dialog, no CSP violation (nothing even tried to
// run), no element the payloads would have made. Without a token (the
// admin's default on loopback) the Host check still guards the t.page.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { assertNoTrouble, curl, startAll, stopAll } from './harness.mjs';

const M = 'xss' + Date.now();
const SCRIPT = `<script>__xss('script')</script>`;
const IMG = `"><img src=x onerror="__xss('img')">`;
const LINK = `javascript:__xss('link')`;
const ALERT = `<svg/onload=alert(1)>`;

const t = {};
before(async () => {
  await startAll('safety', {}, t);
});

after(() => stopAll(t));

async function payloads() {
  // In the path (raw, as a client may send it) and the query.
  await curl(`${t.proxy.url}/api/echo/${SCRIPT.replace(/ /g, '%20')}?m=${M}&q=${ALERT}`);
  // In a header and a JSON body.
  await curl(`${t.proxy.url}/api/echo/hdr?m=${M}`, '-X', 'POST', '-H', `X-Evil: ${IMG}`, '-H', `Referer: ${LINK}`,
    '-H', 'Content-Type: application/json',
    '-d', JSON.stringify({ html: SCRIPT, img: IMG, link: LINK, [IMG]: ALERT }));
  // An HTML response body (echo/raw answers the body with its type).
  await curl(`${t.proxy.url}/api/echo/raw/?m=${M}`, '-X', 'POST', '-H', 'Content-Type: text/html',
    '-d', `<html><body>${SCRIPT}${IMG}<a href="${LINK}">x</a>${ALERT}</body></html>`);
}

// Nothing the payloads could have made is in the document.
async function assertInert() {
  const found = await t.page.evaluate(() => ({
    scripts: [...document.scripts].map((s) => s.src),
    imgs: [...document.querySelectorAll('img')].map((i) => i.getAttribute('src')).filter((s) => !/^blob:/.test(s)),
    svgs: document.querySelectorAll('svg').length,
    handlers: [...document.querySelectorAll('*')].filter((e) => [...e.attributes].some((a) => /^on/i.test(a.name))).length,
    jsLinks: [...document.querySelectorAll('a')].filter((a) => !a.getAttribute('href').startsWith('#')).length,
  }));
  assert.deepEqual(found, { scripts: [t.proxy.admin + '/console/app.js'], imgs: [], svgs: 0, handlers: 0, jsLinks: 0 });
  assertNoTrouble(assert, t.page);
}

test('XSS payloads in a path, a query, headers and bodies stay text', async () => {
  await t.page.goto(t.proxy.admin + '/#/live?q=' + M);
  await t.page.waitForSelector('#status.ok');
  await payloads();
  await t.page.waitForFunction(() => document.querySelectorAll('tr.row').length >= 3);
  const texts = await t.page.$$eval('tr.row', (rows) => rows.map((r) => r.textContent));
  assert.ok(texts.some((t) => t.includes(SCRIPT.replace(/ /g, '%20'))), 'the path is shown as the text it is');
  assert.ok(texts.some((t) => t.includes(ALERT)));
  await assertInert();

  await t.page.goto(t.proxy.admin + '/#/history?q=' + M);
  await t.page.waitForFunction(() => document.querySelectorAll('tr.row').length >= 3);
  await assertInert();

  // Each detail view: headers, bodies (tree and raw), curl.
  const ids = await t.page.$$eval('tr.row', (rows) => rows.map((r) => r.dataset.id));
  for (const id of ids) {
    await t.page.goto(`${t.proxy.admin}/#/request/${id}`);
    await t.page.waitForSelector('#curl', { state: 'attached' });
    for (const btn of await t.page.locator('button.small').all()) await btn.click();
    await t.page.click('details.curl-box > summary');
    await assertInert();
  }
  // The header payload is shown whole, as text, in the header table.
  await t.page.goto(t.proxy.admin + '/#/history?method=POST&q=' + M);
  await t.page.waitForSelector('tr.row');
  await t.page.locator('tr.row', { hasText: '/api/echo/hdr' }).click();
  await t.page.waitForSelector('#req-headers');
  assert.equal(await t.page.locator('#req-headers tr', { hasText: 'X-Evil' }).locator('td').textContent(), IMG);
  assert.equal(await t.page.locator('#req-headers tr', { hasText: 'Referer' }).locator('td').textContent(), LINK);
  assert.ok((await t.page.textContent('#req-body')).includes(SCRIPT));
  await assertInert();
});

test('the console files carry their security headers; without a token the Host check applies', async () => {
  for (const p of ['/', '/console/app.js', '/console/console.css']) {
    const r = await fetch(t.proxy.admin + p);
    assert.equal(r.status, 200, p);
    assert.equal(r.headers.get('content-security-policy'),
      "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'");
    assert.equal(r.headers.get('x-content-type-options'), 'nosniff');
    assert.equal(r.headers.get('referrer-policy'), 'no-referrer');
    assert.equal(r.headers.get('cache-control'), 'no-cache');
  }
  assert.equal((await fetch(t.proxy.admin + '/console/nope.js')).status, 404);
  assert.equal((await fetch(t.proxy.admin + '/console/../index.html')).status, 404);
  // A page under another name (DNS rebinding) gets nothing.
  const { request } = await import('node:http');
  const status = await new Promise((resolve, reject) => {
    request({ host: '127.0.0.1', port: t.proxy.adminPort, path: '/', headers: { Host: 'evil.example:' + t.proxy.adminPort } },
      (r) => { r.resume(); resolve(r.statusCode); }).on('error', reject).end();
  });
  assert.equal(status, 421);
});
