// repl: the Replication view. This site's figures (GET /api/replication:
// the publisher, the outbox, what the replicator applied from each origin
// with its lag now and over five minutes, the writes it keeps failing),
// what the broker holds for each peer (GET /api/replication/peers, when
// the proxy knows the management API), and the dead letters (GET
// /api/dead) with Retry and Discard for each: the very operations of
// `restspy replication dead --retry/--skip`. Refreshed every few seconds
// while shown; an action refreshes at once.
import { getJSON, request } from './api.js';
import { fill, fmtDuration, fmtTime, h, redactable } from './dom.js';

const REFRESH_MS = 3000;

const secs = (s) => (s === null || s === undefined ? '–' : fmtDuration(Math.round(s * 1e6)));
const num = (n) => (n === null || n === undefined ? '–' : String(n));
const when = (us) => (us ? fmtTime(new Date(us / 1000).toISOString()) : '–');

function figures(list) {
  return h('dl', { class: 'meta figures' }, list.filter(([, v]) => v !== undefined).map(([k, v, id]) =>
    [h('dt', null, k), h('dd', id ? { id } : null, v)]));
}

function siteSection(x) {
  const p = x.publisher;
  const lag = x.lag || {};
  return h('section', { class: 'site', id: 'repl-site' },
    h('h3', null, 'This site'),
    figures([
      ['publisher', p ? (p.connected ? 'connected' : 'down' + (p.last_error ? ': ' + p.last_error : '')) : 'off (no broker configured)', 'repl-publisher'],
      ['published', num(p ? p.published : x.published), 'repl-published'],
      ['confirmed', num(p ? p.confirmed : undefined), 'repl-confirmed'],
      ['nacks', num(p ? p.nacks : undefined)],
      ['outbox backlog', num(x.outbox_depth), 'repl-backlog'],
      ['oldest unpublished', x.oldest_unpublished_age_s ? secs(x.oldest_unpublished_age_s) + ' ago' : '–'],
      ['applied here', num(x.applied), 'repl-applied'],
      ['deduplicated', num(x.deduplicated)],
      ['skipped', num(x.skipped)],
      ['dead-lettered', num(x.dead_lettered), 'repl-dead-count'],
      ['apply lag p50 / p99 / max', `${secs(lag.p50_s)} / ${secs(lag.p99_s)} / ${secs(lag.max_s)} over ${secs(lag.window_s)} (${num(lag.applies)} applies)`, 'repl-lag'],
    ]));
}

// What was applied here from each origin node (replication status's "origins").
function originsSection(x) {
  const o = x.origins;
  if (!Array.isArray(o)) return null;
  return h('section', { id: 'repl-origins' }, h('h3', null, 'Applied here, by origin'),
    o.length ? h('table', { class: 'grid' },
      h('thead', null, h('tr', null, ['origin', 'applied', 'last applied', 'lag now', 'p50', 'p99 (5 min)', 'max'].map((c) => h('th', null, c)))),
      h('tbody', null, o.map((r) => {
        const l = r.lag || {};
        return h('tr', null, h('td', null, r.origin), h('td', { class: 'num' }, num(r.applied)), h('td', null, when(r.last_applied_us)),
          h('td', { class: 'num' }, secs(l.now_s)), h('td', { class: 'num' }, secs(l.p50_s)), h('td', { class: 'num' }, secs(l.p99_s)),
          h('td', { class: 'num' }, secs(l.max_s)));
      })))
      : h('p', { class: 'empty' }, 'nothing applied from a peer yet'));
}

function stuckSection(x) {
  if (!x.stuck_total) return null;
  return h('section', { id: 'repl-stuck' }, h('h3', null, `Failing to apply (${x.stuck_total})`),
    h('table', { class: 'grid' },
      h('thead', null, h('tr', null, ['id', 'origin', 'request', 'attempts', 'last answer'].map((c) => h('th', null, c)))),
      h('tbody', null, x.stuck.map((s) => h('tr', null, h('td', null, h('code', null, s.id)), h('td', null, s.origin || ''),
        h('td', null, redactable(`${s.method || ''} ${s.target || ''}`)), h('td', { class: 'num' }, num(s.attempts)),
        h('td', null, redactable(s.last_answer || '')))))));
}

function peersSection(peers) {
  if (peers.error) return h('section', { id: 'repl-peers' }, h('h3', null, 'Peers'), h('p', { class: 'dim' }, peers.error));
  const v = peers.peers || [];
  return h('section', { id: 'repl-peers' }, h('h3', null, 'Peers (what this site\'s broker holds for each)'),
    v.length ? h('table', { class: 'grid' },
      h('thead', null, h('tr', null, ['peer', 'held', 'oldest held', 'link'].map((c) => h('th', null, c)))),
      h('tbody', null, v.map((p) => h('tr', null, h('td', null, p.peer), h('td', { class: 'num' }, num(p.held)),
        h('td', null, p.oldest_age_s ? secs(p.oldest_age_s) + ' ago' : '–'),
        h('td', null, p.shovel ? p.shovel + (p.shovel_reason ? ': ' + p.shovel_reason : '') : p.queue ? 'queue only' : 'no queue (run restspy federate)')))))
      : h('p', { class: 'empty' }, 'no peer: run restspy federate'));
}

export function mountRepl(main, ctx) {
  const abort = new AbortController();
  const site = h('div', { id: 'repl-figures' }, h('p', { class: 'empty' }, 'loading…'));
  const peersEl = h('div');
  const dead = h('div', { id: 'dead' });
  let timer = null;

  const act = async (d, what) => {
    try {
      const r = await request(`/api/dead/${encodeURIComponent(d.id)}/${what}`, { method: 'POST', signal: abort.signal });
      const body = await r.json().catch(() => ({}));
      if (!r.ok) throw new Error(body.error || `${r.status} ${r.statusText}`);
      ctx.status(what === 'retry' ? `retried ${d.id}: back in the apply queue` : `discarded ${d.id}: recorded as skipped, never applied here`, 'ok');
    } catch (e) {
      if (!abort.signal.aborted) ctx.status(`${what} ${d.id}: ${e.message}`, 'err');
    }
    refresh();
  };
  const deadRow = (d) => {
    const retry = h('button', { type: 'button', class: 'small retry', on: { click: () => { retry.disabled = true; act(d, 'retry'); } } }, 'Retry');
    // Two clicks, no dialog: the first arms the button, the second discards.
    const discard = h('button', { type: 'button', class: 'small discard', title: 'recorded as skipped: never applied on this site', on: { click: () => {
      if (!discard.classList.contains('armed')) {
        discard.classList.add('armed');
        discard.textContent = 'Discard for good?';
        return;
      }
      discard.disabled = true;
      act(d, 'skip');
    } } }, 'Discard');
    return h('tr', { class: 'dead', dataset: { dead: d.id } },
      h('td', null, when(d.timestamp * 1e6)), h('td', null, d.origin || ''), h('td', { class: 'method' }, d.method || ''),
      h('td', { class: 'path' }, redactable(d.target || '')), h('td', { class: 'reason' }, redactable(d.reason || '')),
      h('td', { class: 'actions' }, retry, ' ', discard));
  };
  let lastDead = null; // the list shown, re-rendered only when it changed (an armed Discard stays armed)
  const renderDead = (res) => {
    const key = JSON.stringify(res);
    if (key === lastDead) return dead;
    lastDead = key;
    if (res.error) return fill(dead, h('h3', null, 'Dead letters'), h('p', { class: 'dim' }, res.error));
    const v = res.dead || [];
    return fill(dead, h('h3', null, `Dead letters (${v.length}) `, h('span', { class: 'dim' }, 'in ', h('code', null, res.queue || ''))),
      v.length ? h('table', { class: 'grid', id: 'dead-rows' },
        h('thead', null, h('tr', null, ['time', 'origin', 'method', 'target', 'reason', ''].map((c) => h('th', null, c)))),
        h('tbody', null, v.map(deadRow)))
        : h('p', { class: 'empty', id: 'dead-empty' }, 'no dead letters'));
  };
  // An endpoint's answer, {error} for a section that says why it is
  // missing, or null when the admin is busy (503: its thread-pool share is
  // taken, by other consoles say): the section keeps what it shows.
  const soft = (path) => getJSON(path, { signal: abort.signal }).catch((e) => {
    if (abort.signal.aborted) throw e;
    return e.status === 503 ? null : { error: e.message };
  });
  // One after the other: each of these waits on the admin's thread pool
  // (a store count, the broker, its management API), of which a console
  // takes one share at a time.
  const refresh = async () => {
    clearTimeout(timer);
    try {
      const x = await soft('/api/replication');
      if (x && x.error) fill(site, h('p', { class: 'error' }, x.error));
      else if (x) fill(site, siteSection(x), originsSection(x), stuckSection(x));
      const d = await soft('/api/dead');
      if (d) renderDead(d);
      const peers = await soft('/api/replication/peers');
      if (peers) fill(peersEl, peersSection(peers));
      timer = setTimeout(refresh, REFRESH_MS);
    } catch (e) {
      /* aborted: the view is gone */
    }
  };
  fill(main, h('h2', null, 'Replication'), site, peersEl, dead);
  refresh();
  return { unmount: () => { abort.abort(); clearTimeout(timer); } };
}
