// Per-rule flags in the page: a proxy started with a config file of rules;
// toggling one rule's persist changes what is stored for that rule's paths
// only, a rule's name is shown as the text it is (never markup), and a
// switch the proxy cannot make says why.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { assertNoTrouble, curl, removeTmp, startAll, stopAll, tmpdir } from './harness.mjs';

const ODD = '<img src=x onerror=__xss(1)>';
const CONFIG = `[rule "status"]
path = /api/status/**

[rule "echo"]
path = /api/echo/**
replicate = off

[rule "${ODD}"]
path = /never/**
`;

const t = {};
before(async () => {
  t.confDir = tmpdir('rules-conf');
  const conf = path.join(t.confDir, 'rules.conf');
  writeFileSync(conf, CONFIG);
  await startAll('rules', { args: ['--config', conf] }, t);
});

after(async () => {
  try {
    await stopAll(t);
  } finally {
    removeTmp(t.confDir);
  }
});

const stored = async (m) => (await t.proxy.api('/api/requests?limit=1000')).requests.filter((r) => (r.query || '').includes(m));
const ruleOf = (flags, name) => flags.rules.find((r) => r.name === name);
const checkbox = (id) => t.page.locator(`[id="${id}"]`);

async function storedOnce(m) {
  const deadline = Date.now() + 5000;
  let rows = [];
  while (Date.now() < deadline && !rows.length) rows = await stored(m);
  return rows;
}

test('the rules are listed with their switches, names as text', async () => {
  await t.page.goto(t.proxy.admin + '/#/flags');
  await t.page.waitForSelector('#rule-status-persist');
  const names = await t.page.locator('#rule-flags td.name').allTextContents();
  assert.deepEqual(names, ['status', 'echo', ODD, 'default']);
  assert.equal(await t.page.locator('#rule-flags img').count(), 0, 'a rule name is never markup');
  assert.equal(await checkbox(`rule-${ODD}-log`).isChecked(), true);
  assert.equal(await t.page.isChecked('#rule-echo-persist'), true);
  assert.equal(await t.page.isChecked('#rule-echo-replicate'), false);
  // The global switches are still there, above.
  assert.equal(await t.page.isChecked('#flag-persist'), true);
  assertNoTrouble(assert, t.page);
});

test('toggling a rule\'s persist in the page changes what is stored for its paths only', async () => {
  const m = 'rule' + Date.now();
  await t.page.goto(t.proxy.admin + '/#/flags');
  await t.page.waitForSelector('#rule-status-persist');
  await t.page.click('#rule-status-persist');
  await t.page.waitForFunction(() => document.getElementById('status').textContent.includes('persist of rule status is now false'));
  assert.match(await t.page.getAttribute('#status', 'class'), /ok/);
  const flags = await t.proxy.api('/flags');
  assert.equal(ruleOf(flags, 'status').persist, false);
  assert.equal(ruleOf(flags, 'status').configured.persist, true);
  assert.equal(ruleOf(flags, 'echo').persist, true);
  assert.equal(flags.persist, true, 'the global flag is not touched');
  // Marked as switched from its config.
  assert.equal(await t.page.locator('#rule-status-persist').evaluate((e) => e.parentElement.classList.contains('switched')), true);
  await curl(`${t.proxy.url}/api/status/200/?m=${m}-status-off`);
  await curl(`${t.proxy.url}/api/echo/?m=${m}-echo`);
  await t.page.click('#rule-status-persist');
  await t.page.waitForFunction(() => document.getElementById('rule-status-persist').checked && !document.getElementById('rule-status-persist').disabled);
  assert.equal(ruleOf(await t.proxy.api('/flags'), 'status').persist, true);
  await curl(`${t.proxy.url}/api/status/200/?m=${m}-status-on`);
  assert.equal((await storedOnce(m + '-echo')).length, 1, 'the other rule kept storing');
  assert.equal((await storedOnce(m + '-status-on')).length, 1, 'stored with the rule\'s persist on again');
  assert.equal((await stored(m + '-status-off')).length, 0, 'not stored while the rule\'s persist was off');
  assertNoTrouble(assert, t.page);
});

test('a rule switch the proxy cannot make says why', async () => {
  await t.page.goto(t.proxy.admin + '/#/flags');
  await t.page.waitForSelector('#rule-echo-replicate');
  await t.page.click('#rule-echo-replicate');
  await t.page.waitForSelector('#status.err');
  assert.match(await t.page.textContent('#status'), /replicate of rule echo: cannot switch replicate on/);
  await t.page.waitForFunction(() => !document.getElementById('rule-echo-replicate').checked && !document.getElementById('rule-echo-replicate').disabled);
  assert.equal(ruleOf(await t.proxy.api('/flags'), 'echo').replicate, false);
  assertNoTrouble(assert, t.page);
});
