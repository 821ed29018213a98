// flags: the runtime switches of GET /flags, each changed at once with
// PUT /flags (all or nothing: the API's refusal is shown as it says it).

import { getJSON, putJSON } from './api.js';
import { fill, h } from './dom.js';

const ABOUT = {
  log: 'write the access log',
  persist: 'keep requests in the store (what History and the detail view read)',
  replicate: 'publish writes to the broker for the other sites',
  log_format: 'the access log’s line format',
};

export function mountFlags(main, ctx) {
  const abort = new AbortController();
  const list = h('div', { class: 'flags', id: 'flags' });
  const render = (flags) => {
    fill(list, Object.entries(flags).map(([name, value]) => {
      let control;
      if (typeof value === 'boolean') {
        control = h('input', { type: 'checkbox', id: 'flag-' + name, checked: value, role: 'switch' });
        control.addEventListener('change', () => change(name, control.checked, control));
      } else {
        control = h('select', { id: 'flag-' + name },
          ['json', 'combined'].map((v) => h('option', { value: v, selected: v === value }, v)));
        control.addEventListener('change', () => change(name, control.value, control));
      }
      return h('label', { class: 'flag' }, control, h('span', { class: 'name' }, name),
        h('span', { class: 'dim' }, ABOUT[name] || ''));
    }));
  };
  const change = async (name, value, control) => {
    control.disabled = true;
    try {
      render(await putJSON('/flags', { [name]: value }));
      ctx.status(`${name} is now ${value}`, 'ok');
    } catch (e) {
      ctx.status(`${name}: ${e.message}`, 'err');
      load();
    }
  };
  const load = () => getJSON('/flags', { signal: abort.signal }).then(render)
    .catch((e) => { if (!abort.signal.aborted) ctx.status('flags: ' + e.message, 'err'); });
  fill(main, h('h2', null, 'Runtime flags'),
    h('p', { class: 'dim' }, 'Switched at once for every request from now on, without a restart.'), list);
  load();
  return { unmount: () => abort.abort() };
}
