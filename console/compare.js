// compare: one result of a replay report (what `restspy replay --report
// json` writes per request, and what POST /api/requests/ID/replay answers)
// shown as a comparison: the outcome, the statuses, and each difference
// side by side, the recorded value against the replayed one, under the
// JSON path (or header, or "status") that differs. Used by the Replay
// reports view and by the detail view's "Replay" action, so a report read
// from a file and a replay made from the page look the same.
import { fill, fmtDuration, h, redactable } from './dom.js';

// Outcomes as the report names them, with what each means for a reader.
export const OUTCOMES = {
  mismatch: 'the answer differs from the recorded one',
  error: 'no answer (refused, reset, timed out)',
  partial: 'no difference in what could be compared, but only part of the body could be',
  unreplayable: 'not sent: the capture is truncated or redacted',
  sent: 'sent; no recorded response to compare with',
  match: 'the same answer',
};

// A diff value as the report holds it: a string of JSON text for a JSON
// path (shown pretty-printed), a plain string otherwise, null when absent.
function value(v, kind) {
  if (v === null || v === undefined) return h('span', { class: 'absent' }, '(absent)');
  let text = String(v);
  if (kind === 'json') {
    try {
      text = JSON.stringify(JSON.parse(text), null, 2);
    } catch (e) {
      /* not JSON text: shown as it is */
    }
  }
  return h('pre', { class: 'val' }, redactable(text));
}

// The table of differences: path | recorded | replayed.
function diffTable(r) {
  const diffs = r.diffs || [];
  if (!diffs.length) return null;
  const more = r.diffs_total && r.diffs_total > diffs.length
    ? h('p', { class: 'dim' }, `… and ${r.diffs_total - diffs.length} more differences (the report keeps the first ${diffs.length})`) : null;
  return [h('table', { class: 'diffs', id: 'diffs' },
    h('thead', null, h('tr', null, h('th', null, 'where'), h('th', null, 'recorded'), h('th', null, 'replayed'))),
    h('tbody', null, diffs.map((d) => h('tr', { class: 'diff ' + (d.kind || '') },
      h('th', null, h('span', { class: 'kind' }, d.kind || ''), ' ', h('code', null, d.path || '(whole body)')),
      h('td', { class: 'expected' }, value(d.expected, d.kind)),
      h('td', { class: 'actual' }, value(d.actual, d.kind)))))), more];
}

// A text body's line diff ("-" recorded, "+" replayed), lines marked.
function textDiff(t) {
  if (!t) return null;
  return h('pre', { class: 'text-diff', id: 'text-diff' }, t.split('\n').map((line) => {
    const cls = line.startsWith('+') ? 'add' : line.startsWith('-') ? 'del' : '';
    return h('span', { class: 'line ' + cls }, line + '\n');
  }));
}

// One result, whole: a header line then the differences.
export function renderResult(r) {
  const status = r.status_expected || r.status_actual
    ? `status ${r.status_expected || '–'} recorded, ${r.status_actual || '–'} replayed` : null;
  return h('div', { class: 'result ' + r.outcome, id: 'result' },
    h('div', { class: 'result-head' },
      h('span', { class: 'outcome ' + r.outcome }, r.outcome), ' ',
      h('span', { class: 'method' }, r.method || ''), ' ',
      h('span', { class: 'path' }, redactable((r.path || '') + (r.query ? '?' + r.query : ''))),
      h('span', { class: 'dim' }, [status, r.latency_us >= 0 ? fmtDuration(r.latency_us) : null,
        r.loop > 1 ? 'loop ' + r.loop : null].filter(Boolean).map((s) => ' · ' + s))),
    h('p', { class: 'dim' }, OUTCOMES[r.outcome] || ''),
    r.detail ? h('p', { class: 'detail' }, redactable(r.detail)) : null,
    r.redacted_fields ? h('p', { class: 'notice warn' }, `${r.redacted_fields} recorded field(s) were redacted at capture and not compared`) : null,
    diffTable(r), textDiff(r.text_diff));
}

// Fills el with a report's counts (the summary line the CLI prints).
export function renderCounts(el, rep) {
  const c = rep.counts || {};
  const parts = [['requests', c.requests], ['matched', c.matched], ['mismatched', c.mismatched],
    ['errors', c.errors], ['not replayable', c.unreplayable], ['partly compared', c.partial], ['sent', c.sent]]
    .filter(([, n]) => n);
  return fill(el, h('span', { class: 'target' }, 'against ', h('code', null, String(rep.target || '?'))), ' · ',
    parts.map(([k, n], i) => [i ? ', ' : '', h('b', null, String(n)), ' ', k]),
    rep.elapsed_s ? ` in ${Number(rep.elapsed_s).toFixed(2)} s` : '');
}
