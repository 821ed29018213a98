// api: the console's only way to the admin API. The admin token is asked
// once (when the API answers 401), kept in sessionStorage for this tab and
// sent as "Authorization: Bearer" on every request; it never goes into a
// URL. The live stream is read with fetch() and a stream reader rather than
// EventSource, which cannot send that header.

const KEY = 'restspy.admin_token';
let asking = null; // the pending token question, shared by concurrent calls

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export function token() {
  return sessionStorage.getItem(KEY);
}

export function forgetToken() {
  sessionStorage.removeItem(KEY);
}

function authHeaders(extra) {
  const hdrs = new Headers(extra || {});
  const t = token();
  if (t) hdrs.set('Authorization', 'Bearer ' + t);
  return hdrs;
}

// The dialog stays until a token is given: Esc would leave every request
// waiting for one.
document.getElementById('token-dialog').addEventListener('cancel', (ev) => ev.preventDefault());

// Shows the token dialog (index.html) and resolves with what was typed.
function askToken(refused) {
  if (asking) return asking;
  const dialog = document.getElementById('token-dialog');
  const form = document.getElementById('token-form');
  const input = document.getElementById('token-input');
  document.getElementById('token-why').textContent = refused
    ? 'The admin API refused that token. Enter the admin_token restspy was started with.'
    : 'This restspy requires its admin_token. It is kept for this tab only and sent as a header.';
  input.value = '';
  asking = new Promise((resolve) => {
    const done = (ev) => {
      ev.preventDefault(); // no form submission: the value stays in the page
      if (!input.value) return;
      form.removeEventListener('submit', done);
      sessionStorage.setItem(KEY, input.value);
      dialog.close();
      asking = null;
      resolve();
    };
    form.addEventListener('submit', done);
  });
  dialog.showModal();
  input.focus();
  return asking;
}

// fetch(path) with the token; on 401 asks for the token and tries again.
export async function request(path, opts = {}) {
  for (;;) {
    const sent = token();
    const r = await fetch(path, { ...opts, headers: authHeaders(opts.headers), cache: 'no-store' });
    if (r.status !== 401) return r;
    if (opts.signal && opts.signal.aborted) return r;
    if (sent && token() === sent) forgetToken();
    await askToken(Boolean(sent));
  }
}

// The JSON answer of path, or an ApiError with the API's own message.
export async function getJSON(path, opts) {
  const r = await request(path, opts);
  let body = null;
  try {
    body = await r.json();
  } catch (e) {
    /* not JSON: the status says enough */
  }
  if (!r.ok) throw new ApiError(r.status, (body && body.error) || `${r.status} ${r.statusText}`);
  return body;
}

export function putJSON(path, value) {
  return getJSON(path, {
    method: 'PUT',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(value),
  });
}

// Reads GET /api/live?query as Server-Sent Events: onOpen() once the
// stream is accepted, then onEvent(name, data) for each event (data parsed
// as JSON). Resolves when the stream ends (the proxy stopped) and rejects
// on an error or an abort (signal).
export async function live(query, signal, onOpen, onEvent) {
  const r = await request('/api/live' + (query ? '?' + query : ''), { signal });
  if (!r.ok) {
    let msg = `${r.status} ${r.statusText}`;
    try {
      msg = (await r.json()).error || msg;
    } catch (e) {
      /* keep the status */
    }
    throw new ApiError(r.status, msg);
  }
  onOpen();
  const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
  let pending = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    pending += value;
    let end;
    while ((end = pending.indexOf('\n\n')) >= 0) {
      const block = pending.slice(0, end);
      pending = pending.slice(end + 2);
      let name = 'message';
      const data = [];
      for (const line of block.split('\n')) {
        if (line.startsWith(':')) continue; // a comment: keep-alive
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        const val = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
        if (field === 'event') name = val;
        else if (field === 'data') data.push(val);
      }
      if (data.length) onEvent(name, JSON.parse(data.join('\n')));
    }
  }
}
