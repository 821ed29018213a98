// The Replication view against a real RabbitMQ node (tests/browser/broker.py,
// the integration tests' rabbit.py): a dead letter shows with its reason;
// Retry puts it back in the apply queue and it disappears from the page;
// Discard (two clicks) records it as skipped in the ledger and it
// disappears too. The dead letters are published as the replicator
// publishes them (test_replication_cli.publish_dead).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import readline from 'node:readline';
import { after, before, test } from 'node:test';
import { REPO, assertNoTrouble, curl, screenshot, sleep, startAll, stopAll } from './harness.mjs';

const PYTHON = process.env.PYTHON || '/usr/bin/python3';
const NODE = 'test'; // the harness's --node

// The broker process and its answers, one JSON line per command.
class Broker {
  async start() {
    this.proc = spawn(PYTHON, [path.join(REPO, 'tests', 'browser', 'broker.py')], { stdio: ['pipe', 'pipe', 'inherit'] });
    this.lines = readline.createInterface({ input: this.proc.stdout })[Symbol.asyncIterator]();
    const first = await this.next(150000);
    if (first.error) throw new Error('RabbitMQ: ' + first.error);
    Object.assign(this, first);
    return this;
  }

  async next(ms = 30000) {
    let timer;
    const line = await Promise.race([this.lines.next(),
      new Promise((_, reject) => { timer = setTimeout(() => reject(new Error('the broker helper did not answer')), ms); })]);
    clearTimeout(timer);
    if (line.done) throw new Error('the broker helper exited');
    return JSON.parse(line.value);
  }

  // rabbitmqctl (depth) starts an Erlang VM: slow on a loaded machine.
  async cmd(text) {
    this.proc.stdin.write(text + '\n');
    return this.next(90000);
  }

  async stop() {
    if (!this.proc || this.proc.exitCode !== null) return;
    this.proc.stdin.end();
    await new Promise((r) => this.proc.once('exit', r));
  }
}

const t = {};
before(async () => {
  t.broker = await new Broker().start();
  await startAll('replication', { args: ['--amqp', t.broker.amqp] }, t);
  // The proxy's publisher declares the queues when it connects.
  const deadline = Date.now() + 20000;
  while (Date.now() < deadline && !(await t.broker.cmd(`has restspy.dead.${NODE}`)).has) await sleep(200);
});

after(async () => {
  try {
    await stopAll(t);
  } finally {
    if (t.broker) await t.broker.stop();
  }
});

const row = (id) => `#dead tr[data-dead="${id}"]`;

test('a dead letter can be retried from the page and disappears', async () => {
  const { id } = await t.broker.cmd(`dead ${NODE} 7`);
  assert.ok(id, 'published');
  await t.page.goto(`${t.proxy.admin}/#/replication`);
  await t.page.waitForSelector(row(id));
  assert.match(await t.page.textContent(`${row(id)} .reason`), /upstream answered 409: conflict 7/);
  assert.match(await t.page.textContent('#repl-publisher'), /connected/);
  await screenshot(t.page, 'console-replication.png');
  await t.page.click(`${row(id)} button.retry`);
  await t.page.waitForSelector(row(id), { state: 'detached' });
  assert.match(await t.page.textContent('#status'), /retried/);
  assert.equal((await t.broker.cmd(`depth restspy.apply.${NODE}`)).depth, 1, 'back in the apply queue');
  assert.equal((await t.broker.cmd(`depth restspy.dead.${NODE}`)).depth, 0);
  assertNoTrouble(assert, t.page);
});

test('a dead letter can be discarded (two clicks) and is recorded as skipped', async () => {
  const { id } = await t.broker.cmd(`dead ${NODE} 8`);
  await t.page.goto(`${t.proxy.admin}/#/replication`);
  await t.page.waitForSelector(row(id));
  const before = (await t.proxy.api('/api/replication')).skipped;
  await t.page.click(`${row(id)} button.discard`);
  assert.match(await t.page.textContent(`${row(id)} button.discard`), /for good/);
  await sleep(3500); // a refresh in between keeps the armed button armed
  await t.page.click(`${row(id)} button.discard`);
  await t.page.waitForSelector(row(id), { state: 'detached' });
  assert.match(await t.page.textContent('#status'), /discarded/);
  assert.equal((await t.proxy.api('/api/replication')).skipped, before + 1, 'recorded in the ledger');
  assert.equal((await t.broker.cmd(`depth restspy.dead.${NODE}`)).depth, 0);
  assertNoTrouble(assert, t.page);
});

test('the detail view shows a replicated write\'s record: its outbox state, no receipt yet', async () => {
  // A peer's queue takes the write, so that the broker confirms it.
  assert.ok((await t.broker.cmd('peer lyon')).queue);
  const slug = 'rec' + Date.now();
  await curl(`${t.proxy.url}/api/sites/`, '-X', 'POST', '-H', 'Content-Type: application/json',
    '--data', JSON.stringify({ slug, name: 'Rec', url: 'http://rec.example/' }));
  let id = null;
  const deadline = Date.now() + 5000;
  while (Date.now() < deadline && !id) {
    const rows = (await t.proxy.api('/api/requests?method=POST&path=/api/sites/')).requests;
    if (rows.length) id = rows[0].id;
  }
  assert.ok(id);
  // The broker confirms it within a moment: the record says so, and the
  // page shows it (no peer applies it here: there is no peer).
  let rec = null;
  while (Date.now() < deadline + 10000) {
    rec = await t.proxy.api(`/api/requests/${id}/replication`);
    if (rec.outbox === 'confirmed') break;
    await sleep(200);
  }
  assert.equal(rec.outbox, 'confirmed', JSON.stringify(rec));
  await t.page.goto(`${t.proxy.admin}/#/request/${id}`);
  await t.page.waitForSelector('#repl-record');
  const text = await t.page.textContent('#repl-record');
  assert.match(text, /confirmed by the broker/);
  assert.match(text, /no peer has reported applying it yet/);
  // A request replication does not concern has no such section.
  await curl(`${t.proxy.url}/api/sites/`);
  // Not replicated, so stored without waiting for the commit: poll for it.
  let rows = [];
  for (const until = Date.now() + 5000; !rows.length && Date.now() < until; await sleep(100))
    rows = (await t.proxy.api('/api/requests?method=GET&path=/api/sites/')).requests;
  assert.ok(rows.length, 'the GET is stored');
  await t.page.goto(`${t.proxy.admin}/#/request/${rows[0].id}`);
  await t.page.waitForSelector('#resp-body');
  assert.equal(await t.page.$('#repl-record'), null);
  assertNoTrouble(assert, t.page);
});
