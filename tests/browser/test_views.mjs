// The other views: toggling a flag in the page changes what is captured
// (persist off: a request is not stored; on again: it is), and the detail
// view shows what is not plain JSON as what it is: an image from its bytes,
// a hex dump of binary, a text body, a truncated body marked as such.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { after, before, test } from 'node:test';
import { assertNoTrouble, curl, startAll, stopAll } from './harness.mjs';


const t = {};
before(async () => {
  await startAll('views', { args: ['--resp-body-cap', '1K'] }, t);
});

after(() => stopAll(t));

const stored = async (m) => (await t.proxy.api('/api/requests?limit=1000')).requests.filter((r) => (r.query || '').includes(m));

test('toggling persist in the page changes what is stored', async () => {
  const m = 'flag' + Date.now();
  await t.page.goto(t.proxy.admin + '/#/flags');
  await t.page.waitForSelector('#flag-persist');
  assert.equal(await t.page.isChecked('#flag-persist'), true);
  await t.page.click('#flag-persist');
  await t.page.waitForSelector('#status.ok');
  assert.match(await t.page.textContent('#status'), /persist is now false/);
  assert.equal((await t.proxy.api('/flags')).persist, false);
  await curl(`${t.proxy.url}/api/status/200/?m=${m}-off`);
  await t.page.click('#flag-persist');
  await t.page.waitForFunction(() => document.getElementById('flag-persist').checked && !document.getElementById('flag-persist').disabled);
  assert.equal((await t.proxy.api('/flags')).persist, true);
  await curl(`${t.proxy.url}/api/status/200/?m=${m}-on`);
  const deadline = Date.now() + 5000;
  let rows = [];
  while (Date.now() < deadline && !rows.length) rows = await stored(m + '-on');
  assert.equal(rows.length, 1, 'stored with persist on');
  assert.equal((await stored(m + '-off')).length, 0, 'not stored while persist was off');
  // A flag the proxy cannot switch says why, and the page shows the state as it is.
  await t.page.click('#flag-replicate');
  await t.page.waitForSelector('#status.err');
  assert.match(await t.page.textContent('#status'), /cannot switch replicate on/);
  await t.page.waitForFunction(() => !document.getElementById('flag-replicate').checked);
  // The format select.
  await t.page.selectOption('#flag-log_format', 'combined');
  await t.page.waitForFunction(() => document.getElementById('status').textContent.includes('log_format is now combined'));
  assert.equal((await t.proxy.api('/flags')).log_format, 'combined');
  // The refusal is an answer shown, not an error of the page.
  assertNoTrouble(assert, t.page);
});

async function openLatest(m) {
  let rows = [];
  const deadline = Date.now() + 5000;
  while (Date.now() < deadline && !rows.length) rows = await stored(m);
  assert.equal(rows.length, 1);
  await t.page.goto(`${t.proxy.admin}/#/request/${rows[0].id}`);
  await t.page.waitForSelector('#resp-body');
}

test('an image is shown, binary as hex, a cut body as truncated', async () => {
  const m = 'img' + Date.now();
  // A real 2x3 PNG, made by Python (no image library: zlib and struct).
  const png = execFileSync('/usr/bin/python3', ['-c', `
import struct, sys, zlib
def chunk(t, d): return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
raw = b"".join(b"\\x00" + b"\\xff\\x00\\x00" * 2 for _ in range(3))
sys.stdout.buffer.write(b"\\x89PNG\\r\\n\\x1a\\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 3, 8, 2, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
`]);
  const file = `${t.dir}/pic.png`;
  (await import('node:fs')).writeFileSync(file, png);
  await curl(`${t.proxy.url}/api/echo/raw/?m=${m}`, '-X', 'POST', '-H', 'Content-Type: image/png', '--data-binary', '@' + file);
  await openLatest(m);
  const img = t.page.locator('#resp-body img.body-img');
  await img.waitFor();
  assert.match(await img.getAttribute('src'), /^blob:/);
  await t.page.waitForFunction(() => document.querySelector('#resp-body img').complete);
  assert.deepEqual(await img.evaluate((i) => [i.naturalWidth, i.naturalHeight]), [2, 3]);
  // The same bytes as hex, a click away.
  await t.page.locator('#resp-body button', { hasText: 'hex' }).click();
  assert.match(await t.page.textContent('#resp-body pre.hex'), /^00000000 {2}89 50 4e 47 0d 0a 1a 0a/);

  // Binary that is not an image: a hex dump.
  const bin = 'bin' + Date.now();
  const bfile = `${t.dir}/blob.bin`;
  (await import('node:fs')).writeFileSync(bfile, Buffer.from([0, 1, 2, 0xfe, 0xff, 0x41, 0x42]));
  await curl(`${t.proxy.url}/api/echo/raw/?m=${bin}`, '-X', 'POST', '-H', 'Content-Type: application/octet-stream', '--data-binary', '@' + bfile);
  await openLatest(bin);
  assert.match(await t.page.textContent('#req-body pre.hex'), /00000000 {2}00 01 02 fe ff 41 42 +\.\.\.\.\.AB/);

  // Past the 1K response cap: marked truncated, with the real size.
  const big = 'big' + Date.now();
  await curl(`${t.proxy.url}/api/big/?n=5000&m=${big}`);
  await openLatest(big);
  assert.match(await t.page.textContent('#resp-body .truncated'), /truncated: 1\.0 KiB of 4\.9 KiB kept/);
  // Plain text: shown as text.
  const txt = 'txt' + Date.now();
  await curl(`${t.proxy.url}/api/echo/raw/?m=${txt}`, '-X', 'POST', '-H', 'Content-Type: text/plain', '-d', 'hello, plain text');
  await openLatest(txt);
  assert.equal(await t.page.textContent('#req-body pre.text'), 'hello, plain text');
  assertNoTrouble(assert, t.page);
});
