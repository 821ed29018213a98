// detail: one captured request whole (GET /api/requests/ID): what it was,
// a timing bar (upstream against restspy's own time), the headers as
// tables, the bodies pretty-printed (JSON folded and coloured, text, a hex
// dump for binary, images shown from a blob: URL), what restspy did not
// keep said as such (truncated, redacted, undecoded or dropped bodies), the
// request as a curl command line (the one `restspy export --curl` writes:
// GET /api/requests/ID/curl, never a second generator here) and the
// request as a HAR file (GET /api/requests/ID/har), and a replay of it
// against a target with the comparison the replay report gives
// (POST /api/requests/ID/replay?target=URL, shown by compare.js).

import { getJSON, request } from './api.js';
import { renderResult } from './compare.js';
import { REDACTED, fill, fmtDuration, fmtSize, h, redactable, statusClass } from './dom.js';

const IMAGE_TYPES = /^image\/(png|jpeg|gif|webp|avif|bmp|x-icon|vnd\.microsoft\.icon)$/;
const HEX_MAX = 64 * 1024; // bytes shown in a hex dump; the rest is counted
const FOLD_DEPTH = 3; // JSON deeper than this starts folded
const FOLD_SIZE = 50; // and so does an object or array with more members

function header(headers, name) {
  const n = name.toLowerCase();
  const e = (headers || []).find(([k]) => k.toLowerCase() === n);
  return e ? e[1] : null;
}

function b64bytes(s) {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

// ---- bodies

function jsonValue(v) {
  if (v === null) return h('span', { class: 'j-null' }, 'null');
  if (typeof v === 'string') return h('span', { class: 'j-str' }, '"', redactable(v), '"');
  if (typeof v === 'number') return h('span', { class: 'j-num' }, String(v));
  return h('span', { class: 'j-bool' }, String(v));
}

function jsonNode(v, key, depth) {
  const label = key === null ? null : h('span', { class: 'j-key' }, typeof key === 'number' ? String(key) : JSON.stringify(key), ': ');
  if (v === null || typeof v !== 'object') return h('div', { class: 'j-line' }, label, jsonValue(v));
  const isArr = Array.isArray(v);
  const entries = isArr ? v.map((x, i) => [i, x]) : Object.entries(v);
  const [open, close] = isArr ? ['[', ']'] : ['{', '}'];
  if (!entries.length) return h('div', { class: 'j-line' }, label, open + close);
  const summary = h('summary', null, label, open, h('span', { class: 'j-count' }, ` ${entries.length} ${isArr ? 'items' : 'keys'} `), close);
  return h('details', { class: 'j-node', open: depth < FOLD_DEPTH && entries.length <= FOLD_SIZE },
    summary, h('div', { class: 'j-kids' }, entries.map(([k, x]) => jsonNode(x, k, depth + 1))));
}

function hexDump(bytes) {
  const lines = [];
  const n = Math.min(bytes.length, HEX_MAX);
  for (let off = 0; off < n; off += 16) {
    const chunk = bytes.subarray(off, Math.min(off + 16, n));
    const hex = Array.from(chunk, (b) => b.toString(16).padStart(2, '0')).join(' ');
    const asc = Array.from(chunk, (b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : '.')).join('');
    lines.push(off.toString(16).padStart(8, '0') + '  ' + hex.padEnd(47) + '  ' + asc);
  }
  if (bytes.length > n) lines.push(`… ${bytes.length - n} more bytes`);
  return h('pre', { class: 'hex body-view' }, lines.join('\n'));
}

// A view of a text body: JSON as a tree (with its raw text a click away),
// anything else as text.
function textBody(text, ctype) {
  const looksJson = /json/i.test(ctype || '') || /^\s*[[{]/.test(text);
  if (looksJson) {
    try {
      const tree = h('div', { class: 'json body-view' }, jsonNode(JSON.parse(text), null, 0));
      const raw = h('pre', { class: 'text body-view', hidden: true }, redactable(text));
      const toggle = h('button', { type: 'button', class: 'small' }, 'raw');
      toggle.addEventListener('click', () => {
        raw.hidden = !raw.hidden;
        tree.hidden = !raw.hidden;
        toggle.textContent = raw.hidden ? 'raw' : 'tree';
      });
      return [toggle, tree, raw];
    } catch (e) {
      /* cut or not JSON after all: shown as text */
    }
  }
  return h('pre', { class: 'text body-view' }, redactable(text));
}

// The body of one side ('req' or 'resp') and what restspy says about it.
function bodySection(rec, side, urls) {
  const hdrs = rec[side + '_headers'];
  const ctype = header(hdrs, 'content-type');
  const size = rec[side + '_body_size'];
  const note = rec[side + '_body_note'];
  const enc = rec[side + '_encoding'];
  const b64 = rec[side + '_body_b64'];
  const text = rec[side + '_body'];
  const bytes = b64 ? b64bytes(b64) : null;
  const kept = bytes ? bytes.length : new TextEncoder().encode(text || '').length;
  const notes = [];
  if (enc) notes.push(h('div', { class: 'notice' }, `sent with Content-Encoding ${enc}; shown decoded`));
  if (note) notes.push(h('div', { class: 'notice warn' }, note.startsWith('dropped')
    ? `not stored: ${note} (restspy could not decode it, so it could not be redacted)` : `stored as received: ${note}`));
  if (rec[side + '_truncated'])
    notes.push(h('div', { class: 'notice warn truncated' }, `truncated: ${fmtSize(kept)} of ${fmtSize(size)} kept (the rule's body cap)`));
  let view;
  if (!size && !kept) view = h('p', { class: 'empty' }, 'no body');
  else if (bytes && IMAGE_TYPES.test((ctype || '').split(';')[0].trim().toLowerCase())) {
    const url = URL.createObjectURL(new Blob([bytes], { type: ctype.split(';')[0].trim() }));
    urls.push(url);
    const hex = hexDump(bytes);
    hex.hidden = true;
    const toggle = h('button', { type: 'button', class: 'small' }, 'hex');
    toggle.addEventListener('click', () => { hex.hidden = !hex.hidden; });
    view = [toggle, h('img', { class: 'body-img', src: url, alt: 'the captured image' }), hex];
  } else if (bytes) view = hexDump(bytes);
  else if (kept) view = textBody(text, ctype);
  else view = null;
  return h('div', { class: 'body', id: side + '-body' },
    h('h3', null, 'Body ', h('span', { class: 'dim' }, [fmtSize(size), ctype ? ' · ' + ctype : ''].join(''))), notes, view);
}

function headerTable(headers, id) {
  if (!headers || !headers.length) return h('p', { class: 'empty' }, 'no headers');
  return h('table', { class: 'headers', id },
    h('tbody', null, headers.map(([k, v]) => h('tr', null, h('th', null, k), h('td', null, redactable(v))))));
}

function timing(rec) {
  const total = Math.max(rec.duration_us || 0, 0);
  const up = rec.upstream_us >= 0 ? Math.min(rec.upstream_us, total) : 0;
  const own = total - up;
  const bar = h('div', { class: 'timing-bar', title: 'upstream vs restspy' });
  const a = h('span', { class: 'up' });
  const b = h('span', { class: 'own' });
  // CSSOM, not a style attribute: allowed by the page's style-src 'self'.
  a.style.width = total ? (100 * up / total).toFixed(2) + '%' : '0';
  b.style.width = total ? (100 * own / total).toFixed(2) + '%' : '0';
  bar.append(a, b);
  return h('div', { class: 'timing', id: 'timing' }, bar,
    h('div', { class: 'legend' },
      h('span', { class: 'key up' }), ' upstream ', rec.upstream_us >= 0 ? fmtDuration(up) : 'none (no upstream answer)',
      h('span', { class: 'key own' }), ' restspy ', fmtDuration(own), ' · total ', fmtDuration(total)));
}

// ---- copy as curl, download as HAR

// What a curl line of this record cannot reproduce, said next to it.
function curlCaveats(rec) {
  const caveats = [];
  const all = JSON.stringify([rec.query, rec.req_headers, rec.req_body]);
  if (all.includes(REDACTED)) caveats.push('it holds values restspy redacted: they are copied as stored, "[redacted]"');
  if (rec.req_truncated) caveats.push('the request body was cut at capture: only the kept part is sent');
  if (rec.req_body_note && rec.req_body_note.startsWith('dropped')) caveats.push('the request body was not stored');
  return caveats;
}

// The API's text for path (an ApiError's message on failure).
async function getText(path, signal) {
  const r = await request(path, { signal });
  const text = await r.text();
  if (!r.ok) {
    let msg = `${r.status} ${r.statusText}`;
    try {
      msg = JSON.parse(text).error || msg;
    } catch (e) {
      /* not JSON */
    }
    throw new Error(msg);
  }
  return text;
}

// ---- the replication record

// What became of this request's write (GET /api/requests/ID/replication):
// this site's outbox (waiting for the broker's confirm, or confirmed), the
// receipts of the peers that applied it (or dead-lettered or skipped it),
// or, for a write applied here from a peer, its ledger row. Nothing is
// shown for a request that replication never concerned.
function replicationRecord(x) {
  if (!x || (!x.state && !x.outbox && !(x.applied || []).length && !x.applied_here)) return null;
  const at = (us) => (us ? new Date(us / 1000).toISOString() : '–');
  const lines = [];
  if (x.state) lines.push(['state here', x.state]);
  if (x.outbox) lines.push(['broker', x.outbox === 'waiting' ? 'published, waiting for the broker\'s confirm (in the outbox)' : 'confirmed by the broker']);
  if (x.applied_here)
    lines.push(['applied here', `from ${x.applied_here.origin || '?'} at ${at(x.applied_here.at_us)}${x.applied_here.state ? ' (' + x.applied_here.state + ')' : ''}, message ${x.applied_here.message_id}`]);
  const peers = x.applied || [];
  return h('section', { class: 'repl-record', id: 'repl-record' }, h('h3', null, 'Replication'),
    h('dl', { class: 'meta' }, lines.map(([k, v]) => [h('dt', null, k), h('dd', null, v)])),
    x.outbox || x.state ? (peers.length
      ? h('table', { class: 'grid', id: 'repl-peers-applied' },
        h('thead', null, h('tr', null, ['peer', 'outcome', 'status', 'at'].map((c) => h('th', null, c)))),
        h('tbody', null, peers.map((p) => h('tr', { class: 'outcome-' + p.outcome },
          h('td', null, p.node), h('td', null, h('span', { class: 'outcome ' + (p.outcome === 'applied' ? 'match' : 'mismatch') }, p.outcome)),
          h('td', { class: 'num' }, p.status ? String(p.status) : '–'), h('td', null, at(p.at_us))))))
      : h('p', { class: 'dim' }, 'no peer has reported applying it yet')) : null);
}

// ---- replay this request

const TARGET_KEY = 'restspy.replay_target'; // the last target, for this tab

// The Replay form: a target URL and a button; the answer (the report of
// one request) is shown under it.
function replayBox(base, ctx, signal) {
  const target = h('input', { type: 'url', id: 'replay-target', placeholder: 'http://host:port (the server to replay against)',
    value: sessionStorage.getItem(TARGET_KEY) || '', 'aria-label': 'replay target' });
  const out = h('div', { id: 'replay-result' });
  const go = h('button', { type: 'submit', id: 'replay' }, 'Replay');
  const form = h('form', { class: 'replay-form', on: { submit: async (ev) => {
    ev.preventDefault();
    const t = target.value.trim();
    if (!t) return ctx.status('give the server to replay against', 'err');
    sessionStorage.setItem(TARGET_KEY, t);
    go.disabled = true;
    fill(out, h('p', { class: 'dim' }, 'replaying…'));
    try {
      const r = await request(`${base}/replay?target=${encodeURIComponent(t)}`, { method: 'POST', signal });
      const rep = await r.json().catch(() => ({}));
      if (!r.ok) throw new Error(rep.error || `${r.status} ${r.statusText}`);
      const res = rep.results && rep.results[0];
      if (!res) throw new Error('the replay gave no result');
      fill(out, renderResult(res));
      ctx.status(`replayed against ${t}: ${res.outcome}`, res.outcome === 'match' ? 'ok' : 'warn');
    } catch (e) {
      if (signal.aborted) return;
      fill(out, h('p', { class: 'error' }, e.message));
      ctx.status('replay: ' + e.message, 'err');
    } finally {
      go.disabled = false;
    }
  } } }, h('label', null, 'Replay against ', target), go);
  return h('details', { class: 'replay-box', id: 'replay-box' }, h('summary', null, 'Replay this request'),
    h('p', { class: 'dim' }, 'Sends it to the target now and compares the answer with the recorded one, as restspy replay does.'),
    form, out);
}

// ---- the view

export function mountDetail(main, ctx) {
  const abort = new AbortController();
  const urls = []; // blob: URLs of images, revoked when the view goes
  fill(main, h('p', { class: 'empty' }, 'loading…'));
  const base = '/api/requests/' + encodeURIComponent(ctx.id);
  // The replication record is extra: a proxy without it (or an error) leaves it out.
  const repl = getJSON(base + '/replication', { signal: abort.signal }).catch(() => null);
  Promise.all([getJSON(base, { signal: abort.signal }), getText(base + '/curl', abort.signal), repl]).then(([rec, line, rx]) => {
    const command = line.replace(/\n$/, '');
    const caveats = curlCaveats(rec);
    const curlPre = h('pre', { class: 'curl', id: 'curl' }, command);
    const copy = h('button', { type: 'button', id: 'copy-curl' }, 'Copy as curl');
    copy.addEventListener('click', () => {
      navigator.clipboard.writeText(command).then(
        () => ctx.status('curl command copied', 'ok'),
        () => ctx.status('the browser refused the clipboard: select the command below', 'warn'));
    });
    // The token goes in a header, so the file is fetched here and handed
    // to the browser as a blob, not linked.
    const har = h('button', { type: 'button', id: 'download-har' }, 'Download HAR');
    har.addEventListener('click', () => {
      getText(base + '/har').then((text) => {
        const url = URL.createObjectURL(new Blob([text], { type: 'application/json' }));
        urls.push(url);
        const a = h('a', { href: '#', download: `restspy-${rec.id}.har` });
        a.href = url; // a blob: URL, set as a property (dom.js takes only '#' links)
        a.click();
      }, (e) => ctx.status(e.message, 'error'));
    });
    const meta = [['id', rec.id], ['time', rec.time], ['client', rec.client_addr], ['node', rec.node],
      ['origin', rec.origin], ['rule', rec.rule], ['replication', rec.replication], ['error', rec.error]]
      .filter(([, v]) => v !== null && v !== undefined);
    fill(main,
      h('div', { class: 'toolbar' }, h('button', { type: 'button', id: 'back', on: { click: ctx.back } }, '← Back (Esc)'), copy, har),
      h('h2', { class: 'title' }, h('span', { class: 'method' }, rec.method || ''), ' ',
        h('span', { class: 'path', id: 'detail-path' }, redactable(rec.path || ''), rec.query ? h('span', { class: 'query' }, '?', redactable(rec.query)) : null),
        ' ', h('span', { class: 'status ' + statusClass(rec.status) }, rec.status ? String(rec.status) : 'no response')),
      h('dl', { class: 'meta' }, meta.map(([k, v]) => [h('dt', null, k), h('dd', null, String(v))])),
      timing(rec),
      replicationRecord(rx),
      replayBox(base, ctx, abort.signal),
      h('div', { class: 'sides' },
        h('section', { class: 'side' }, h('h2', null, 'Request'), headerTable(rec.req_headers, 'req-headers'), bodySection(rec, 'req', urls)),
        h('section', { class: 'side' }, h('h2', null, 'Response'), headerTable(rec.resp_headers, 'resp-headers'), bodySection(rec, 'resp', urls))),
      h('details', { class: 'curl-box' }, h('summary', null, 'curl command'),
        caveats.length ? h('ul', { class: 'caveats' }, caveats.map((c) => h('li', null, c))) : null, curlPre));
    ctx.status('');
  }).catch((e) => {
    if (!abort.signal.aborted) fill(main, h('div', { class: 'toolbar' }, h('button', { type: 'button', id: 'back', on: { click: ctx.back } }, '← Back (Esc)')),
      h('p', { class: 'error' }, e.message));
  });
  return {
    unmount: () => {
      abort.abort();
      urls.forEach((u) => URL.revokeObjectURL(u));
    },
  };
}
