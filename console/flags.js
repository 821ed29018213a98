// flags: the runtime switches of GET /flags, each changed at once with
// PUT /flags (all or nothing: the API's refusal is shown as it says it).
// The global switches first, then each rule's (in config order, the default
// rule last): a request is logged, persisted, replicated when the global
// switch and its rule's switch are both on.

import { getJSON, putJSON } from './api.js';
import { fill, h } from './dom.js';

const ABOUT = {
  log: 'write the access log',
  persist: 'keep requests in the store (what History and the detail view read)',
  replicate: 'publish writes to the broker for the other sites',
  log_format: 'the access log’s line format',
};

const SWITCHES = ['log', 'persist', 'replicate'];

export function mountFlags(main, ctx) {
  const abort = new AbortController();
  const list = h('div', { class: 'flags', id: 'flags' });
  const rules = h('table', { class: 'rules', id: 'rule-flags' });

  // One global flag: a switch, or the log format's select.
  const globalFlag = ([name, value]) => {
    let control;
    if (typeof value === 'boolean') {
      control = h('input', { type: 'checkbox', id: 'flag-' + name, checked: value, role: 'switch' });
      control.addEventListener('change', () => change(name, { [name]: control.checked }, control.checked, control));
    } else {
      control = h('select', { id: 'flag-' + name },
        ['json', 'combined'].map((v) => h('option', { value: v, selected: v === value }, v)));
      control.addEventListener('change', () => change(name, { [name]: control.value }, control.value, control));
    }
    return h('label', { class: 'flag' }, control, h('span', { class: 'name' }, name),
      h('span', { class: 'dim' }, ABOUT[name] || ''));
  };

  // One rule's row: its name (text, whatever it holds) and a switch per
  // column, marked when it is not what the config says.
  const ruleRow = (r) => h('tr', null,
    h('td', { class: 'name' }, r.name),
    SWITCHES.map((sw) => {
      const switched = r[sw] !== r.configured[sw];
      const control = h('input', {
        type: 'checkbox', id: `rule-${r.name}-${sw}`, checked: r[sw], role: 'switch',
        'aria-label': `${sw} for rule ${r.name}`,
      });
      control.addEventListener('change', () =>
        change(`${sw} of rule ${r.name}`, { rules: { [r.name]: { [sw]: control.checked } } }, control.checked, control));
      return h('td', {
        class: switched ? 'switched' : null,
        title: switched ? `switched at run time (configured: ${r.configured[sw] ? 'on' : 'off'})` : null,
      }, control);
    }));

  const render = (flags) => {
    const { rules: ruleList, ...globals } = flags;
    fill(list, Object.entries(globals).map(globalFlag));
    fill(rules, h('thead', null, h('tr', null, h('th', null, 'rule'), SWITCHES.map((sw) => h('th', null, sw)))),
      h('tbody', null, (ruleList || []).map(ruleRow)));
  };
  const change = async (label, body, value, control) => {
    control.disabled = true;
    try {
      render(await putJSON('/flags', body));
      ctx.status(`${label} is now ${value}`, 'ok');
    } catch (e) {
      ctx.status(`${label}: ${e.message}`, 'err');
      load();
    }
  };
  const load = () => getJSON('/flags', { signal: abort.signal }).then(render)
    .catch((e) => { if (!abort.signal.aborted) ctx.status('flags: ' + e.message, 'err'); });
  fill(main, h('h2', null, 'Runtime flags'),
    h('p', { class: 'dim' }, 'Switched at once for every request from now on, without a restart.'), list,
    h('h2', null, 'Per rule'),
    h('p', { class: 'dim' }, 'A request is captured by its rule (the first that matches, the default last): ' +
      'it is logged, persisted, replicated when both the switch above and its rule’s are on. ' +
      'A rule switched here stays so across a config reload while the file still has it.'),
    rules);
  load();
  return { unmount: () => abort.abort() };
}
