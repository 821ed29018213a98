// Replays in the page: a captured request replayed from its detail view
// shows the comparison (a mismatch, its JSON paths side by side), and a
// report written by `restspy replay --report json` opened in the Replay
// reports view shows the same mismatch. The difference is real: the site
// is changed on the app behind the proxy's back between capture and replay.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { assertNoTrouble, curl, screenshot, startAll, stopAll } from './harness.mjs';

const RESTSPY = process.env.RESTSPY_BIN || path.join(path.dirname(new URL(import.meta.url).pathname), '..', '..', 'build', 'restspy');

const t = {};
let slug, getId;
before(async () => {
  await startAll('replay', {}, t);
  slug = 'rp' + Date.now();
  await curl(`${t.proxy.url}/api/sites/`, '-X', 'POST', '-H', 'Content-Type: application/json',
    '--data', JSON.stringify({ slug, name: 'Before', url: 'http://before.example/' }));
  await curl(`${t.proxy.url}/api/sites/${slug}/`);
  const deadline = Date.now() + 5000;
  while (Date.now() < deadline && !getId) {
    const rows = (await t.proxy.api(`/api/requests?method=GET&path=/api/sites/${slug}/`)).requests;
    if (rows.length) getId = rows[0].id;
  }
  assert.ok(getId, 'the GET was captured');
  // Behind the proxy's back: the answer to that GET is now different.
  await curl(`${t.app.url}/api/sites/${slug}/`, '-X', 'PATCH', '-H', 'Content-Type: application/json',
    '--data', JSON.stringify({ name: 'After' }));
});

after(() => stopAll(t));

// The diff rows shown in the page: [where, recorded, replayed].
const diffRows = () => t.page.$$eval('#diffs tbody tr', (trs) => trs.map((tr) =>
  [tr.querySelector('th code').textContent, tr.querySelector('td.expected').textContent, tr.querySelector('td.actual').textContent]));

test('replaying a request from its detail view shows the mismatch side by side', async () => {
  await t.page.goto(`${t.proxy.admin}/#/request/${getId}`);
  await t.page.waitForSelector('#resp-body').catch(async (e) => {
    throw new Error(e.message + '\npage: ' + await t.page.textContent('main') + '\n' + t.page.trouble.join('\n'));
  });
  await t.page.click('#replay-box summary');
  await t.page.fill('#replay-target', t.app.url);
  await t.page.click('#replay');
  await t.page.waitForSelector('#replay-result .outcome.mismatch');
  const rows = await diffRows();
  const name = rows.find(([where]) => where.includes('name'));
  assert.ok(name, 'the name differs: ' + JSON.stringify(rows));
  assert.match(name[1], /Before/);
  assert.match(name[2], /After/);
  assert.match(await t.page.textContent('#status'), /mismatch/);
  // Replaying against nothing says why, in the page.
  await t.page.fill('#replay-target', 'ftp://nowhere');
  await t.page.click('#replay');
  await t.page.waitForSelector('#replay-result .error');
  assertNoTrouble(assert, t.page);
});

test('a report from restspy replay --report json shows its mismatch in Replay reports', async () => {
  const file = path.join(t.dir, 'report.json');
  const out = spawnSync(RESTSPY, ['replay', '--store', 'sqlite:' + path.join(t.dir, 'restspy.db'), '--id', getId,
    '--target', t.app.url, '--report', 'json', file], { encoding: 'utf8', timeout: 20000 });
  assert.equal(out.status, 1, 'a mismatch exits 1: ' + out.stderr);
  await t.page.goto(`${t.proxy.admin}/#/reports`);
  await t.page.setInputFiles('#report-file', file);
  await t.page.waitForSelector('#report-rows tbody tr.row');
  assert.match(await t.page.textContent('#report-counts'), /1 mismatched/);
  assert.equal(await t.page.textContent('#report-rows tbody tr.row .outcome'), 'mismatch');
  await t.page.waitForSelector('#result-pane #diffs');
  const name = (await diffRows()).find(([where]) => where.includes('name'));
  assert.ok(name);
  assert.match(name[1], /Before/);
  assert.match(name[2], /After/);
  await screenshot(t.page, 'console-report.png');
  // The filter hides it when asked for matches only; the URL carries the choice.
  await t.page.selectOption('#r-outcome', 'match');
  await t.page.waitForSelector('#report-rows td.empty');
  assert.match(t.page.url(), /outcome=match/);
  // A file that is not a report is refused with a reason.
  const bad = path.join(t.dir, 'bad.json');
  writeFileSync(bad, '{"hello": 1}');
  await t.page.setInputFiles('#report-file', bad);
  await t.page.waitForSelector('#status.err');
  assert.match(await t.page.textContent('#status'), /not a replay report/);
  assertNoTrouble(assert, t.page);
});
