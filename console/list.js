// list: the Live and History views, one table of request summaries with
// one filter bar. The filters live in the page's URL (#/live?status=5xx),
// so a view can be shared; method, path, status, origin and replication
// (diverged) go to the admin API as they are (the same filters as `restspy
// requests`, checked there),
// the free text is matched here on path and query.

import { ApiError, getJSON, live } from './api.js';
import { fill, fmtDuration, fmtSize, fmtTime, h, redactable, statusClass } from './dom.js';

const SERVER_FILTERS = ['method', 'path', 'status', 'origin', 'replication'];
const LIVE_MAX_ROWS = 1000; // the oldest rows leave the Live table past this
const PAGE = 100;

// The API's query string for the filters of params (URLSearchParams).
function serverQuery(params, extra = {}) {
  const q = new URLSearchParams();
  for (const k of SERVER_FILTERS) if (params.get(k)) q.set(k, params.get(k));
  for (const [k, v] of Object.entries(extra)) if (v !== null && v !== undefined) q.set(k, v);
  return q.toString();
}

function textMatch(params, r) {
  const t = (params.get('q') || '').toLowerCase();
  if (!t) return true;
  return ((r.path || '') + '?' + (r.query || '')).toLowerCase().includes(t);
}

const COLUMNS = ['time', 'method', 'path', 'status', 'duration', 'size', 'rule', 'origin', 'replication'];

function row(r) {
  const target = r.query ? [redactable(r.path || ''), h('span', { class: 'query' }, '?', redactable(r.query))] : redactable(r.path || '');
  const origin = r.origin === 'local' || !r.origin ? r.origin || '–' : `${r.origin} (${r.node || '?'})`;
  return h('tr', { class: 'row', dataset: { id: r.id }, tabIndex: -1 },
    h('td', { class: 'time', title: r.time }, fmtTime(r.time)),
    h('td', { class: 'method' }, r.method || ''),
    h('td', { class: 'path', title: r.path + (r.query ? '?' + r.query : '') }, target),
    h('td', { class: 'status ' + statusClass(r.status), title: r.error || '' }, r.status ? String(r.status) : 'err'),
    h('td', { class: 'num' }, fmtDuration(r.duration_us)),
    h('td', { class: 'num' }, fmtSize(r.resp_body_size)),
    h('td', { class: 'rule' }, r.rule || ''),
    h('td', { class: 'origin' }, origin),
    h('td', { class: 'repl' }, r.replication || '–'));
}

// The filter bar; apply(newParams) is called on submit.
function filterBar(params, apply) {
  const field = (name, label, attrs) =>
    h('label', null, label, h('input', { id: 'f-' + name, name, value: params.get(name) || '', autocomplete: 'off', spellcheck: false, ...attrs }));
  const origin = h('select', { id: 'f-origin', name: 'origin' },
    ['', 'local', 'replicated', 'imported'].map((o) => h('option', { value: o, selected: (params.get('origin') || '') === o }, o || 'any')));
  // The replicated writes whose answer here differed from the origin's
  // (`restspy replication diverged`).
  const repl = h('select', { id: 'f-replication', name: 'replication' },
    ['', 'diverged'].map((o) => h('option', { value: o, selected: (params.get('replication') || '') === o }, o || 'any')));
  const form = h('form', { class: 'filters', id: 'filters' },
    field('method', 'method', { placeholder: 'GET', size: 7, list: 'methods' }),
    h('datalist', { id: 'methods' }, ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS'].map((m) => h('option', { value: m }))),
    field('path', 'path', { placeholder: '/api/** (glob)', size: 18 }),
    field('status', 'status', { placeholder: '2xx, 404, 500-599', size: 10 }),
    h('label', null, 'origin', origin),
    h('label', null, 'replication', repl),
    field('q', 'text', { placeholder: 'in path or query  ( / )', size: 16, type: 'search' }),
    h('button', { type: 'submit' }, 'Apply'),
    h('button', { type: 'button', id: 'f-clear', on: { click: () => apply(new URLSearchParams()) } }, 'Clear'));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const p = new URLSearchParams();
    for (const el of form.elements) if (el.name && el.value.trim()) p.set(el.name, el.value.trim());
    apply(p);
  });
  origin.addEventListener('change', () => form.requestSubmit());
  repl.addEventListener('change', () => form.requestSubmit());
  return form;
}

function table(tbody) {
  return h('table', { class: 'rows' }, h('thead', null, h('tr', null, COLUMNS.map((c) => h('th', null, c)))), tbody);
}

// The Live view: events of /api/live, newest on top. ctx: {params, setParams, status}.
export function mountLive(main, ctx) {
  const { params } = ctx;
  const tbody = h('tbody', { id: 'rows' });
  const seen = new Set();
  let paused = false;
  let held = []; // events that arrived while paused, oldest first
  let skipped = 0;
  const pauseBtn = h('button', { id: 'pause', type: 'button', title: 'pause / resume (p)' }, 'Pause');
  const info = h('span', { class: 'info', id: 'live-info' });
  const abort = new AbortController();

  const showInfo = () => {
    const parts = [];
    if (paused) parts.push(`paused: ${held.length} waiting`);
    if (skipped) parts.push(`${skipped} not shown (over the stream's rate)`);
    info.textContent = parts.join(' · ');
  };
  const add = (r, atTop) => {
    if (seen.has(r.id) || !textMatch(params, r)) return;
    seen.add(r.id);
    const tr = row(r);
    if (atTop) tbody.prepend(tr);
    else tbody.append(tr);
    while (tbody.rows.length > LIVE_MAX_ROWS) {
      seen.delete(tbody.lastElementChild.dataset.id);
      tbody.lastElementChild.remove();
    }
  };
  pauseBtn.addEventListener('click', () => {
    paused = !paused;
    pauseBtn.textContent = paused ? 'Resume' : 'Pause';
    pauseBtn.classList.toggle('on', paused);
    if (!paused) {
      for (const r of held) add(r, true);
      held = [];
    }
    showInfo();
  });

  fill(main,
    h('div', { class: 'toolbar' }, filterBar(params, ctx.setParams), pauseBtn, info),
    table(tbody));

  const onEvent = (name, data) => {
    if (name === 'request') {
      if (paused) {
        held.push(data);
        if (held.length > LIVE_MAX_ROWS) held.shift();
      } else add(data, true);
    } else if (name === 'skipped') skipped += data.count;
    showInfo();
  };

  // The stream, reconnected after a second when it ends or fails.
  (async () => {
    while (!abort.signal.aborted) {
      try {
        ctx.status('live: connecting');
        await live(serverQuery(params), abort.signal, () => ctx.status('live: connected', 'ok'), onEvent);
        ctx.status('live: the stream ended; reconnecting', 'warn');
      } catch (e) {
        if (abort.signal.aborted) return;
        ctx.status('live: ' + e.message, 'err');
        if (e instanceof ApiError && e.status === 400) return; // a bad filter: say so and stop
      }
      await new Promise((res) => setTimeout(res, 1000));
    }
  })();
  // What was captured just before: the newest page, below what streams in.
  getJSON('/api/requests?' + serverQuery(params, { limit: 50 }), { signal: abort.signal })
    .then((doc) => doc.requests.forEach((r) => add(r, false)))
    .catch(() => {}); // the store may be off: Live still works

  return { unmount: () => abort.abort() };
}

// The History view: pages of /api/requests, "Older" for the next one.
export function mountHistory(main, ctx) {
  const { params } = ctx;
  const tbody = h('tbody', { id: 'rows' });
  const older = h('button', { id: 'older', type: 'button', hidden: true }, 'Older');
  const info = h('span', { class: 'info', id: 'history-info' });
  const abort = new AbortController();
  let until = params.get('until');
  let count = 0;

  const load = async () => {
    older.disabled = true;
    try {
      const doc = await getJSON('/api/requests?' + serverQuery(params, { limit: PAGE, until }), { signal: abort.signal });
      for (const r of doc.requests) {
        count++;
        if (textMatch(params, r)) tbody.append(row(r));
      }
      until = doc.next_until;
      older.hidden = !doc.more;
      info.textContent = `${tbody.rows.length} shown` + (params.get('q') ? ` (${count} read, text matched here)` : '');
      ctx.status('');
    } catch (e) {
      if (!abort.signal.aborted) ctx.status('history: ' + e.message, 'err');
    } finally {
      older.disabled = false;
    }
  };
  older.addEventListener('click', load);
  fill(main,
    h('div', { class: 'toolbar' }, filterBar(params, ctx.setParams),
      h('button', { type: 'button', id: 'reload', on: { click: () => ctx.setParams(params) } }, 'Reload'), info),
    table(tbody),
    h('div', { class: 'more' }, older));
  load();
  return { unmount: () => abort.abort() };
}
