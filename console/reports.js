// reports: the Replay reports view. Opens a JSON report written by
// `restspy replay --report json` (chosen or dropped: it is read in the
// page, never sent anywhere), lists its results (the problems first:
// everything but matches unless asked), and shows the selected one with
// its differences side by side (compare.js). The report stays open while
// the tab lives, so a request opened from it can come back to it.
import { OUTCOMES, renderCounts, renderResult } from './compare.js';
import { fill, h, redactable, statusClass } from './dom.js';

let opened = null; // {name, report}: the report of this tab

// The report in text, checked for the members the view reads; throws a
// message for a reader.
export function parseReport(text) {
  let rep;
  try {
    rep = JSON.parse(text);
  } catch (e) {
    throw new Error('not JSON: ' + e.message);
  }
  if (!rep || typeof rep !== 'object' || !Array.isArray(rep.results) || typeof rep.counts !== 'object')
    throw new Error('not a replay report: expected what `restspy replay --report json` writes ({"target", "counts", "results": [...]})');
  return rep;
}

function row(r, i) {
  const n = (r.diffs_total || (r.diffs || []).length);
  return h('tr', { class: 'row', tabIndex: -1, dataset: { idx: String(i) } },
    h('td', null, h('span', { class: 'outcome ' + r.outcome }, r.outcome)),
    h('td', { class: 'method' }, r.method || ''),
    h('td', { class: 'path' }, redactable((r.path || '') + (r.query ? '?' + r.query : ''))),
    h('td', null, h('span', { class: 'status ' + statusClass(r.status_expected) }, String(r.status_expected || '–')), ' → ',
      h('span', { class: 'status ' + statusClass(r.status_actual) }, String(r.status_actual || '–'))),
    h('td', { class: 'num' }, n ? String(n) : ''));
}

export function mountReports(main, ctx) {
  const file = h('input', { type: 'file', id: 'report-file', accept: '.json,application/json' });
  const show = h('select', { id: 'r-outcome' },
    h('option', { value: 'problems', selected: (ctx.params.get('outcome') || 'problems') === 'problems' }, 'all but matches'),
    h('option', { value: '', selected: ctx.params.get('outcome') === '' }, 'everything'),
    Object.keys(OUTCOMES).map((o) => h('option', { value: o, selected: ctx.params.get('outcome') === o }, o)));
  const q = h('input', { type: 'search', id: 'f-q', placeholder: 'path contains', value: ctx.params.get('q') || '' });
  const counts = h('p', { class: 'counts', id: 'report-counts' });
  const body = h('tbody');
  const table = h('table', { class: 'rows', id: 'report-rows' },
    h('thead', null, h('tr', null, ['outcome', 'method', 'path', 'status', 'diffs'].map((c) => h('th', null, c)))), body);
  const pane = h('div', { class: 'result-pane', id: 'result-pane' });
  const drop = h('div', { class: 'drop', id: 'report-drop' },
    h('label', null, 'Open a report ', file), h('span', { class: 'dim' }, ' or drop one here: the file written by ',
      h('code', null, 'restspy replay --target URL --report json report.json'), '. It is read in this page only.'));

  let shown = [];
  const select = (tr) => {
    for (const t of body.querySelectorAll('tr.sel')) t.classList.remove('sel');
    tr.classList.add('sel');
    fill(pane, renderResult(shown[Number(tr.dataset.idx)]));
    const id = shown[Number(tr.dataset.idx)].id;
    if (id) pane.append(h('p', null, h('a', { href: '#/request/' + encodeURIComponent(id) }, 'open the captured request')));
  };
  const render = () => {
    if (!opened) {
      fill(counts);
      fill(body);
      fill(pane, h('p', { class: 'empty' }, 'no report open'));
      return;
    }
    const rep = opened.report;
    renderCounts(counts, rep);
    counts.prepend(h('b', null, opened.name), ' · ');
    const want = show.value;
    const text = q.value.toLowerCase();
    shown = rep.results.filter((r) => (want === '' || (want === 'problems' ? r.outcome !== 'match' : r.outcome === want)) &&
      (!text || ((r.path || '') + '?' + (r.query || '')).toLowerCase().includes(text)));
    fill(body, shown.length ? shown.map(row)
      : h('tr', null, h('td', { colSpan: 5, class: 'empty' }, rep.results.length ? 'no result of this kind' : 'the report has no results')));
    fill(pane, h('p', { class: 'empty' }, shown.length ? 'select a result (j/k, Enter)' : ''));
    const first = body.querySelector('tr.row');
    if (first) select(first);
  };
  const load = (f) => {
    f.text().then((text) => {
      opened = { name: f.name, report: parseReport(text) };
      ctx.status(`${f.name}: ${opened.report.results.length} result(s)`, 'ok');
      render();
    }).catch((e) => ctx.status(`${f.name}: ${e.message}`, 'err'));
  };
  file.addEventListener('change', () => { if (file.files.length) load(file.files[0]); });
  drop.addEventListener('dragover', (ev) => { ev.preventDefault(); drop.classList.add('over'); });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (ev) => {
    ev.preventDefault();
    drop.classList.remove('over');
    if (ev.dataTransfer.files.length) load(ev.dataTransfer.files[0]);
  });
  const keep = () => {
    const p = new URLSearchParams();
    if (show.value !== 'problems') p.set('outcome', show.value);
    if (q.value) p.set('q', q.value);
    history.replaceState(null, '', '#/reports' + (p.toString() ? '?' + p : ''));
    render();
  };
  show.addEventListener('change', keep);
  q.addEventListener('input', keep);
  // app.js sends 'open' to a selected row without a request id (Enter, click).
  table.addEventListener('open', (ev) => select(ev.target));

  fill(main, h('h2', null, 'Replay reports'), drop,
    h('form', { class: 'filters', on: { submit: (ev) => ev.preventDefault() } },
      h('label', null, 'show', show), h('label', null, 'path', q)),
    counts, h('div', { class: 'split' }, h('div', { class: 'list-pane' }, table), pane));
  render();
  return { unmount: () => {} };
}
