// app: the console's entry point. Routes on the URL's hash (#/live,
// #/history, #/request/ID, #/replication, #/reports, #/flags; a list's
// filters follow a '?', so a view can be shared as a link) and handles the
// keyboard: j/k or the arrows move in a list, Enter opens, Esc goes back,
// / goes to the filter, p pauses Live, l h r o f switch views.

import { forgetToken } from './api.js';
import { mountDetail } from './detail.js';
import { mountFlags } from './flags.js';
import { mountHistory, mountLive } from './list.js';
import { mountRepl } from './repl.js';
import { mountReports } from './reports.js';

const main = document.getElementById('main');
const statusEl = document.getElementById('status');
let current = null; // the mounted view: {unmount}
let lastList = '#/live'; // where Esc from a detail returns

function status(text, kind) {
  statusEl.textContent = text || '';
  statusEl.className = 'status' + (kind ? ' ' + kind : '');
}

function parseHash() {
  const raw = location.hash.replace(/^#/, '') || '/live';
  const q = raw.indexOf('?');
  const path = q < 0 ? raw : raw.slice(0, q);
  return { path, params: new URLSearchParams(q < 0 ? '' : raw.slice(q + 1)) };
}

function go(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

function route() {
  const { path, params } = parseHash();
  if (current) current.unmount();
  status('');
  const view = path.split('/')[1] || 'live';
  for (const a of document.querySelectorAll('nav a')) a.classList.toggle('active', a.id === 'nav-' + view);
  const setParams = (p) => {
    const s = p.toString();
    go(`#/${view}${s ? '?' + s : ''}`);
  };
  const ctx = { params, setParams, status, back: () => go(lastList) };
  if (view === 'live' || view === 'history') {
    lastList = location.hash || '#/live';
    current = (view === 'live' ? mountLive : mountHistory)(main, ctx);
  } else if (view === 'request') {
    ctx.id = decodeURIComponent(path.slice('/request/'.length));
    current = mountDetail(main, ctx);
  } else if (view === 'flags') {
    current = mountFlags(main, ctx);
  } else if (view === 'replication') {
    current = mountRepl(main, ctx);
  } else if (view === 'reports') {
    current = mountReports(main, ctx);
  } else {
    go('#/live');
  }
}

// ---- keyboard

function rows() {
  return Array.from(main.querySelectorAll('table.rows tbody tr.row'));
}

function move(delta) {
  const all = rows();
  if (!all.length) return;
  const at = all.findIndex((r) => r.classList.contains('sel'));
  const next = all[Math.max(0, Math.min(all.length - 1, at < 0 ? 0 : at + delta))];
  all.forEach((r) => r.classList.remove('sel'));
  next.classList.add('sel');
  next.focus({ preventScroll: true });
  next.scrollIntoView({ block: 'nearest' });
}

// A row of captured requests opens its detail; any other row (a replay
// report's) is told to open, and its view decides what that shows.
function open(tr) {
  if (!tr) return;
  if (tr.dataset.id) go('#/request/' + encodeURIComponent(tr.dataset.id));
  else tr.dispatchEvent(new CustomEvent('open', { bubbles: true }));
}

document.addEventListener('keydown', (ev) => {
  if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const t = ev.target;
  const typing = t instanceof HTMLInputElement || t instanceof HTMLSelectElement || t instanceof HTMLTextAreaElement;
  if (document.getElementById('token-dialog').open) return;
  if (typing) {
    if (ev.key === 'Escape') t.blur();
    return;
  }
  if (ev.key === 'Enter' && t instanceof Element && t.closest('button, a, summary')) return;
  const view = parseHash().path.split('/')[1] || 'live';
  const keys = {
    j: () => move(1), ArrowDown: () => move(1), k: () => move(-1), ArrowUp: () => move(-1),
    Enter: () => open(main.querySelector('tr.row.sel')),
    Escape: () => { if (view === 'request') go(lastList); },
    '/': () => { const f = document.getElementById('f-q'); if (f) f.focus(); },
    p: () => { const b = document.getElementById('pause'); if (b) b.click(); },
    l: () => go('#/live'), h: () => go('#/history'), f: () => go('#/flags'),
    r: () => go('#/replication'), o: () => go('#/reports'),
  };
  const fn = keys[ev.key];
  if (fn) {
    ev.preventDefault();
    fn();
  }
});

main.addEventListener('click', (ev) => {
  const tr = ev.target.closest('tr.row');
  if (tr) open(tr);
});

document.getElementById('forget').addEventListener('click', () => {
  forgetToken();
  status('token forgotten: it is asked again on the next request', 'ok');
});

window.addEventListener('hashchange', route);
route();
