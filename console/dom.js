// dom: the one way the console puts anything on the page. Every captured
// value becomes a text node (textContent): no markup is ever parsed from
// data, so a path, header or body holding <script> or onerror= is shown as
// the text it is. Attributes are set one by one, never from captured data
// except as plain text values (title, dataset).

// h('tr', {class: 'row', dataset: {id}}, child, 'text', ...): an element.
// Children: nodes, strings (text nodes), numbers, null/undefined/false
// (skipped) and arrays of those.
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (/html|^on./i.test(k)) throw new Error('console elements take no markup nor handlers: ' + k);
    if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'on') for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
    else if (k === 'href') el.href = safeHref(v);
    else if (hasSetter(el, k)) el[k] = v;
    else el.setAttribute(k, v);
  }
  append(el, children);
  return el;
}

// Whether el's property k can be assigned (checked, open, tabIndex...);
// else k is set as an attribute (list, role, aria-*).
function hasSetter(el, k) {
  for (let o = el; o; o = Object.getPrototypeOf(o)) {
    const d = Object.getOwnPropertyDescriptor(o, k);
    if (d) return Boolean(d.set) || (d.writable && typeof d.value !== 'function');
  }
  return false;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

// Only the console's own views are linked: a captured "javascript:" URL
// can never become a link target.
function safeHref(v) {
  if (typeof v !== 'string' || !v.startsWith('#')) throw new Error('console links stay in the page');
  return v;
}

// Replaces el's children.
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

// A text with each "[redacted]" (what restspy stores in place of a secret)
// shown as a marked span, so a redacted value is never mistaken for data.
export const REDACTED = '[redacted]';
export function redactable(text) {
  const s = String(text);
  if (!s.includes(REDACTED)) return document.createTextNode(s);
  const frag = document.createDocumentFragment();
  const parts = s.split(REDACTED);
  parts.forEach((p, i) => {
    if (p) frag.appendChild(document.createTextNode(p));
    if (i < parts.length - 1)
      frag.appendChild(h('span', { class: 'redacted', title: 'redacted by restspy: the value was not stored' }, REDACTED));
  });
  return frag;
}

export function fmtDuration(us) {
  if (us === null || us === undefined || us < 0) return '–';
  if (us < 1000) return us + ' µs';
  if (us < 1e6) return (us / 1000).toFixed(us < 1e4 ? 2 : 1) + ' ms';
  return (us / 1e6).toFixed(2) + ' s';
}

export function fmtSize(n) {
  if (n === null || n === undefined) return '–';
  if (n < 1024) return n + ' B';
  if (n < 1024 * 1024) return (n / 1024).toFixed(1) + ' KiB';
  return (n / 1024 / 1024).toFixed(1) + ' MiB';
}

// "12:03:04.123" in local time (the full RFC 3339 text goes in a title).
export function fmtTime(rfc3339) {
  const d = new Date(rfc3339);
  if (isNaN(d)) return String(rfc3339);
  const p = (n, w = 2) => String(n).padStart(w, '0');
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
}

export function statusClass(status) {
  const c = Math.floor((status || 0) / 100);
  return c >= 1 && c <= 5 ? 's' + c : 's0';
}
