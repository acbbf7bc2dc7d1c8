// AethroLink console: plain JavaScript, no library, no build step. It talks only to the node
// that served it (same origin) through the documented HTTP API, and sends the token the user
// entered (kept in sessionStorage, for this tab only) as `Authorization: Bearer …`. Live views
// read server-sent events with fetch streaming (EventSource cannot send that header).
'use strict';

const TOKEN_KEY = 'aethrolink.console.token';
const STATUSES = ['created', 'pending_launch', 'launching', 'ready', 'dispatching', 'running',
  'awaiting_input', 'completed', 'failed', 'cancelled'];
const TERMINAL = new Set(['completed', 'failed', 'cancelled']);
const PAGE = 25;
const PUBLIC_READS = new Set(['/v1/node/identity', '/v1/node/health']);

// ---------- small helpers ----------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k === 'text') node.textContent = v;
    else if (k.startsWith('on') && typeof v === 'function') node.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(node.dataset, v);
    else node.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function badge(value, extra) {
  return el('span', { class: `badge ${value || ''} ${extra || ''}`, text: value || '—' });
}

function when(ts) {
  if (!ts) return '—';
  const d = new Date(ts);
  if (Number.isNaN(d.getTime())) return ts;
  return d.toLocaleString(undefined, { hour12: false });
}

function json(value) {
  return el('pre', { text: typeof value === 'string' ? value : JSON.stringify(value, null, 2) });
}

function kv(pairs) {
  const dl = el('dl', { class: 'kv' });
  for (const [k, v] of pairs) {
    if (v === undefined || v === null || v === '') continue;
    dl.append(el('dt', { text: k }), el('dd', {}, v instanceof Node ? v : String(v)));
  }
  return dl;
}

function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

function errorText(err) {
  if (err && err.body && typeof err.body === 'object' && err.body.error) {
    return `${err.status}: ${err.body.error}`;
  }
  if (err && err.status) return `${err.status}: ${typeof err.body === 'string' && err.body ? err.body : 'request failed'}`;
  return String(err && err.message ? err.message : err);
}

// ---------- the API ----------

function token() {
  return sessionStorage.getItem(TOKEN_KEY) || '';
}

function headers(extra) {
  const h = Object.assign({}, extra || {});
  const t = token();
  if (t) h.Authorization = `Bearer ${t}`;
  return h;
}

class ApiError extends Error {
  constructor(status, body) {
    super(body && body.error ? body.error : `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

async function api(method, path, body) {
  const init = { method, headers: headers({ Accept: 'application/json' }) };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const resp = await fetch(path, init);
  const text = await resp.text();
  let data = text;
  try { data = text ? JSON.parse(text) : null; } catch (_) { /* not JSON */ }
  if (resp.status === 401) authNeeded(data);
  if (!resp.ok) throw new ApiError(resp.status, data);
  // The identity is public: its answer says nothing about the token.
  if (!PUBLIC_READS.has(path)) authOk();
  return data;
}

// A server-sent event stream read with fetch (so it carries the token). `onEvent(name, data, id)`
// for each event; `onState(open)` when it opens or ends. Returns { close }.
function stream(path, { onEvent, onState, lastId }) {
  const ctrl = new AbortController();
  let closed = false;
  (async () => {
    const h = headers({ Accept: 'text/event-stream' });
    if (lastId) h['Last-Event-ID'] = String(lastId);
    let resp;
    try {
      resp = await fetch(path, { headers: h, signal: ctrl.signal });
    } catch (_) {
      if (onState) onState(false, null);
      return;
    }
    if (!resp.ok) {
      let body = null;
      try { body = await resp.json(); } catch (_) { /* empty */ }
      if (resp.status === 401) authNeeded(body);
      if (onState) onState(false, new ApiError(resp.status, body));
      return;
    }
    authOk();
    if (onState) onState(true, null);
    const reader = resp.body.getReader();
    const decoder = new TextDecoder();
    let buf = '';
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += decoder.decode(value, { stream: true }).replace(/\r\n?/g, '\n');
        let cut;
        while ((cut = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, cut);
          buf = buf.slice(cut + 2);
          let name = 'message'; let id = null; const data = [];
          for (const line of block.split('\n')) {
            if (line.startsWith(':')) continue;
            const colon = line.indexOf(':');
            const field = colon < 0 ? line : line.slice(0, colon);
            const val = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
            if (field === 'event') name = val;
            else if (field === 'data') data.push(val);
            else if (field === 'id') id = val;
          }
          if (!data.length) continue;
          let parsed = data.join('\n');
          try { parsed = JSON.parse(parsed); } catch (_) { /* text */ }
          onEvent(name, parsed, id);
        }
      }
    } catch (_) { /* aborted or cut */ }
    if (!closed && onState) onState(false, null);
  })();
  return { close() { closed = true; ctrl.abort(); } };
}

// ---------- auth messages ----------

function authNeeded(body) {
  const box = document.getElementById('auth-message');
  const why = body && body.error ? ` (the node says: ${body.error})` : '';
  box.textContent = token()
    ? `The node refused the token${why}. Enter a valid token above.`
    : `This node needs a token${why}. Enter an API token in the Token field above: the local admin ` +
      'token file alink-cli uses (~/.local/state/aethrolink/tokens/loopback-<port>.token) or one made ' +
      'with POST /v1/tokens (docs/security.md).';
  box.hidden = false;
}

function authOk() {
  document.getElementById('auth-message').hidden = true;
}

// ---------- the live feed of every task's events ----------

const feed = {
  listeners: new Set(),
  conn: null,
  retry: null,
  start() {
    if (this.conn) this.conn.close();
    clearTimeout(this.retry);
    const live = document.getElementById('live');
    this.conn = stream('/v1/events', {
      onEvent: (name, data) => {
        for (const fn of this.listeners) fn(name, data);
      },
      onState: (open, e) => {
        live.textContent = open ? 'live' : 'offline';
        live.classList.toggle('on', open);
        if (open) {
          // Whatever happened while we were away: views list again.
          for (const fn of this.listeners) fn('reconnected', null);
        } else if (!(e && e.status === 401)) {
          // Cut (node restarting): follow again. Refused for want of a token: wait for one.
          this.retry = setTimeout(() => this.start(), 2000);
        }
      },
    });
  },
  on(fn) { this.listeners.add(fn); return () => this.listeners.delete(fn); },
};

// ---------- views ----------

let cleanup = [];
function onLeave(fn) { cleanup.push(fn); }

const main = () => document.getElementById('main');

function render(...nodes) {
  const m = main();
  m.replaceChildren(...nodes);
}

function errorBox() {
  return el('div', { class: 'error', id: 'view-error', role: 'alert', 'aria-live': 'assertive' });
}

function showError(box, err) {
  box.textContent = err ? errorText(err) : '';
}

// Tasks list ---------------------------------------------------------------

const listState = { statuses: new Set(), target: '', q: '', stuck: false, retrying: false, cursors: [null] };

async function viewTasks() {
  const err = errorBox();
  const targetSel = el('select', { id: 'filter-target', 'aria-label': 'Target' }, el('option', { value: '', text: 'any target' }));
  const text = el('input', { id: 'filter-q', type: 'search', placeholder: 'text in the last event', value: listState.q, 'aria-label': 'Text' });
  const statusBoxes = STATUSES.map((s) => el('label', {},
    el('input', { type: 'checkbox', value: s, checked: listState.statuses.has(s), dataset: { status: s } }), ` ${s}`));
  const fieldset = el('fieldset', { id: 'filter-status' }, el('legend', { text: 'Status' }), statusBoxes);
  // What operators look for first: work that stopped moving, and work waiting to be retried.
  const stuckBox = el('input', { type: 'checkbox', id: 'filter-stuck', checked: listState.stuck });
  const retryingBox = el('input', { type: 'checkbox', id: 'filter-retrying', checked: listState.retrying });
  const attention = el('fieldset', { id: 'filter-attention' }, el('legend', { text: 'Needs attention' }),
    el('label', {}, stuckBox, ' stuck (no progress for 10 min)'), el('label', {}, retryingBox, ' waiting to retry'));
  const tbody = el('tbody');
  const table = el('table', { id: 'task-list' },
    el('thead', {}, el('tr', {},
      el('th', { text: 'Task' }), el('th', { text: 'Status' }), el('th', { text: 'Target' }),
      el('th', { text: 'Intent' }), el('th', { class: 'wide', text: 'Created' }), el('th', { text: 'Updated' }))),
    tbody);
  const prev = el('button', { type: 'button', id: 'page-prev', text: '← Newer', disabled: true });
  const next = el('button', { type: 'button', id: 'page-next', text: 'Older →', disabled: true });
  const pageInfo = el('span', { class: 'muted' });
  render(el('h1', { text: 'Tasks' }),
    el('form', { class: 'filters', onsubmit: (e) => e.preventDefault() },
      fieldset,
      attention,
      el('div', { class: 'field' }, el('label', { for: 'filter-target', text: 'Target' }), targetSel),
      el('div', { class: 'field' }, el('label', { for: 'filter-q', text: 'Text' }), text)),
    err, el('div', { class: 'table-wrap' }, table), el('div', { class: 'pager' }, prev, next, pageInfo));

  api('GET', '/v1/targets').then((d) => {
    for (const t of d.targets || []) targetSel.append(el('option', { value: t.target_id, text: t.target_id }));
    targetSel.value = listState.target;
  }).catch(() => {});

  let rows = new Map();
  const rowOf = (t) => {
    const tr = el('tr', { dataset: { taskId: t.task_id, status: t.status } },
      el('td', { class: 'id' }, el('a', { href: `#/task/${t.task_id}`, text: t.task_id })),
      el('td', { class: 'status' }, badge(t.status)),
      el('td', { text: t.resolved_agent_id || t.requested_agent_id || '—' }),
      el('td', { text: t.intent }),
      el('td', { class: 'wide', text: when(t.created_at) }),
      el('td', { class: 'updated', text: when(t.updated_at) }));
    return tr;
  };

  async function load() {
    const params = new URLSearchParams();
    for (const s of listState.statuses) params.append('status', s);
    if (listState.target) params.set('target', listState.target);
    if (listState.q) params.set('q', listState.q);
    if (listState.stuck) params.set('stuck', 'true');
    if (listState.retrying) params.set('retrying', 'true');
    params.set('limit', String(PAGE));
    const cursor = listState.cursors[listState.cursors.length - 1];
    if (cursor) params.set('cursor', cursor);
    try {
      const page = await api('GET', `/v1/tasks?${params}`);
      showError(err, null);
      rows = new Map();
      tbody.replaceChildren(...page.tasks.map((t) => { const r = rowOf(t); rows.set(t.task_id, r); return r; }));
      if (!page.tasks.length) tbody.append(el('tr', {}, el('td', { colspan: 6, class: 'muted', text: 'No tasks match.' })));
      next.disabled = !page.next_cursor;
      next.onclick = () => { listState.cursors.push(page.next_cursor); load(); };
      prev.disabled = listState.cursors.length <= 1;
      pageInfo.textContent = `page ${listState.cursors.length}`;
    } catch (e) {
      showError(err, e);
    }
  }
  prev.onclick = () => { if (listState.cursors.length > 1) { listState.cursors.pop(); load(); } };
  const reset = () => { listState.cursors = [null]; load(); };
  fieldset.addEventListener('change', (e) => {
    const s = e.target.dataset.status;
    if (e.target.checked) listState.statuses.add(s); else listState.statuses.delete(s);
    reset();
  });
  targetSel.addEventListener('change', () => { listState.target = targetSel.value; reset(); });
  stuckBox.addEventListener('change', () => { listState.stuck = stuckBox.checked; reset(); });
  retryingBox.addEventListener('change', () => { listState.retrying = retryingBox.checked; reset(); });
  text.addEventListener('input', debounce(() => { listState.q = text.value.trim(); reset(); }, 300));

  const relist = debounce(load, 250);
  onLeave(feed.on((name, ev) => {
    if (name === 'task.event' && ev && ev.task_id) {
      const row = rows.get(ev.task_id);
      if (row) {
        // At once where it is shown; the re-list below puts it where the filters say.
        row.dataset.status = ev.state;
        row.querySelector('.status').replaceChildren(badge(ev.state));
        row.querySelector('.updated').textContent = when(ev.created_at);
      }
      if (listState.cursors.length === 1) relist();
    } else if (name === 'lagged' || name === 'reconnected') {
      relist();
    }
  }));
  await load();
}

// One task -----------------------------------------------------------------

async function artifactText(id) {
  const resp = await fetch(`/v1/artifacts/${encodeURIComponent(id)}`, { headers: headers() });
  const text = await resp.text();
  if (!resp.ok) {
    let body = text;
    try { body = JSON.parse(text); } catch (_) { /* text */ }
    throw new ApiError(resp.status, body);
  }
  try { return JSON.stringify(JSON.parse(text), null, 2); } catch (_) { return text; }
}

function eventItem(ev) {
  const li = el('li', { class: TERMINAL.has(ev.state) ? 'terminal' : '', dataset: { seq: ev.seq, kind: ev.kind } },
    el('div', { class: 'ev-head' },
      el('span', { class: 'muted mono', text: `#${ev.seq}` }),
      el('span', { class: 'ev-kind', text: ev.kind }),
      badge(ev.state),
      el('span', { class: 'muted', text: ev.source }),
      el('span', { class: 'muted', text: when(ev.created_at) })),
    ev.message ? el('div', { text: ev.message }) : null,
    ev.data && Object.keys(ev.data).length ? el('details', {}, el('summary', { text: 'data' }), json(ev.data)) : null);
  return li;
}

async function viewTask(id) {
  const err = errorBox();
  const notice = el('div', { class: 'notice', role: 'status', 'aria-live': 'polite' });
  const record = el('div');
  const actions = el('div', { class: 'actions' });
  const resume = el('div');
  const timeline = el('ol', { class: 'timeline', id: 'timeline', 'aria-live': 'polite' });
  const payload = el('div');
  const result = el('div');
  render(el('p', {}, el('a', { href: '#/tasks', text: '← Tasks' })),
    el('h1', {}, 'Task ', el('span', { class: 'mono', text: id })),
    err, notice, actions, resume,
    el('div', { class: 'two' },
      el('section', { 'aria-label': 'Record' }, el('h2', { text: 'Record' }), record,
        el('h2', { text: 'Payload' }), payload, el('h2', { text: 'Result' }), result),
      el('section', { 'aria-label': 'Events' }, el('h2', { text: 'Events' }), timeline)));

  let task = null;
  const events = [];
  let shownResult = null;
  let shownPayload = null;

  const cancelBtn = el('button', { type: 'button', id: 'cancel-task', class: 'danger', text: 'Cancel task' });
  cancelBtn.addEventListener('click', async () => {
    cancelBtn.disabled = true;
    try {
      const r = await api('POST', `/v1/tasks/${encodeURIComponent(id)}/cancel`, { reason: 'cancelled from the console' });
      showError(err, null);
      notice.textContent = TERMINAL.has(r.status) ? `Task ${r.status}.` : 'Cancel requested; waiting for the runtime to confirm.';
    } catch (e) {
      showError(err, e);
    }
    refresh();
  });
  actions.append(cancelBtn);

  async function sendResume(body, button) {
    if (button) button.disabled = true;
    try {
      const r = await api('POST', `/v1/tasks/${encodeURIComponent(id)}/resume`, body);
      showError(err, null);
      notice.textContent = r.status === 'awaiting_input' ? 'Answer accepted; the task goes on.' : `Answer accepted (task ${r.status}).`;
    } catch (e) {
      showError(err, e);
      if (button) button.disabled = false;
    }
  }

  function drawResume() {
    if (!task || task.status !== 'awaiting_input') { resume.replaceChildren(); return; }
    const ask = [...events].reverse().find((e) => e.kind === 'task.awaiting_input');
    const data = (ask && ask.data) || {};
    const options = Array.isArray(data.options) ? data.options : [];
    const box = el('section', { class: 'resume', id: 'resume', 'aria-label': 'Awaiting input' },
      el('h2', { text: 'Awaiting input' }),
      el('div', { text: (ask && ask.message) || data.prompt || 'The task is waiting for an answer.' }));
    if (data.tool_call) box.append(el('details', {}, el('summary', { text: 'tool call' }), json(data.tool_call)));
    if (options.length) {
      const row = el('div', { class: 'actions' });
      for (const o of options) {
        const optionId = o.optionId || o.option_id || o.id;
        const rejects = typeof o.kind === 'string' && o.kind.startsWith('reject');
        const b = el('button', { type: 'button', class: rejects ? 'danger' : 'primary', dataset: { optionId }, text: o.name || optionId });
        if (o.kind) b.title = o.kind;
        b.addEventListener('click', () => sendResume({ option_id: optionId }, b));
        row.append(b);
      }
      box.append(row);
    }
    const input = el('input', { id: 'resume-text', type: 'text', placeholder: 'Answer as text', 'aria-label': 'Answer' });
    const send = el('button', { type: 'submit', id: 'resume-send', text: 'Send answer' });
    box.append(el('form', { onsubmit: (e) => { e.preventDefault(); sendResume({ payload: { text: input.value } }, send); } }, input, send));
    resume.replaceChildren(box);
  }

  async function showArtifacts() {
    if (task.payload_artifact_id && shownPayload !== task.payload_artifact_id) {
      shownPayload = task.payload_artifact_id;
      artifactText(task.payload_artifact_id).then((t) => payload.replaceChildren(el('pre', { id: 'payload', text: t })))
        .catch((e) => payload.replaceChildren(el('div', { class: 'error', text: errorText(e) })));
    }
    if (task.result_artifact_id && shownResult !== task.result_artifact_id) {
      shownResult = task.result_artifact_id;
      artifactText(task.result_artifact_id).then((t) => result.replaceChildren(el('pre', { id: 'result', text: t })))
        .catch((e) => result.replaceChildren(el('div', { class: 'error', text: errorText(e) })));
    } else if (!task.result_artifact_id) {
      result.replaceChildren(el('p', { class: 'muted', text: TERMINAL.has(task.status) ? 'No result.' : 'Not yet.' }));
    }
  }

  async function refresh() {
    try {
      task = await api('GET', `/v1/tasks/${encodeURIComponent(id)}`);
    } catch (e) {
      showError(err, e);
      return;
    }
    record.replaceChildren(kv([
      ['status', el('span', { id: 'task-status', dataset: { status: task.status } }, badge(task.status))],
      ['intent', task.intent],
      ['target', task.resolved_agent_id || task.requested_agent_id],
      ['sender', task.sender],
      ['conversation', task.conversation_id],
      ['thread', task.thread_id ? el('a', { href: `#/thread/${task.thread_id}`, text: task.thread_id }) : null],
      ['priority', task.priority],
      ['attempt', (task.max_attempts || 1) > 1 ? `${task.attempt} of ${task.max_attempts}` : null],
      ['next retry', task.next_retry_at ? when(task.next_retry_at) : null],
      ['last error', task.last_error ? `${task.last_error.reason}${task.last_error.detail ? `: ${task.last_error.detail}` : ''}` : null],
      ['created', when(task.created_at)],
      ['updated', when(task.updated_at)],
    ]), el('details', {}, el('summary', { text: 'full record' }), json(task)));
    cancelBtn.disabled = TERMINAL.has(task.status);
    drawResume();
    showArtifacts();
  }
  const refreshSoon = debounce(refresh, 150);

  await refresh();
  if (!task) return;
  let lastSeq = 0;
  let conn = null;
  const follow = () => {
    conn = stream(`/v1/tasks/${encodeURIComponent(id)}/events`, {
      lastId: lastSeq,
      onEvent: (name, ev) => {
        if (name !== 'task.event' || !ev || ev.seq <= lastSeq) return;
        lastSeq = ev.seq;
        events.push(ev);
        timeline.append(eventItem(ev));
        refreshSoon();
      },
      onState: (open, e) => {
        if (e) showError(err, e);
        // The stream closes after the terminal event; otherwise it was cut: follow again.
        if (!open && !e && !(events.length && TERMINAL.has(events[events.length - 1].state))) {
          setTimeout(() => { if (conn) follow(); }, 1000);
        }
      },
    });
  };
  follow();
  onLeave(() => { const c = conn; conn = null; if (c) c.close(); });
}

// Targets ------------------------------------------------------------------

async function viewTargets() {
  const err = errorBox();
  const cards = el('div', { class: 'cards', id: 'targets' });
  render(el('h1', { text: 'Targets' }), err, cards);
  const open = new Set();

  async function launches(id, box) {
    try {
      const d = await api('GET', `/v1/targets/${encodeURIComponent(id)}/launches`);
      const rows = (d.launches || []).map((l) => el('tr', {},
        el('td', { text: l.status }), el('td', { text: l.pid || '—' }), el('td', { text: l.exit_code ?? '—' }),
        el('td', { text: when(l.started_at) }), el('td', { text: when(l.ended_at) }), el('td', { text: l.error || '' })));
      box.replaceChildren(rows.length ? el('div', { class: 'table-wrap' }, el('table', {},
        el('thead', {}, el('tr', {}, ...['status', 'pid', 'exit', 'started', 'ended', 'error'].map((h) => el('th', { text: h })))),
        el('tbody', {}, rows))) : el('p', { class: 'muted', text: 'No launches.' }));
    } catch (e) {
      box.replaceChildren(el('div', { class: 'error', text: errorText(e) }));
    }
  }

  async function act(id, what, button) {
    button.disabled = true;
    try {
      await api('POST', `/v1/targets/${encodeURIComponent(id)}/${what}`, what === 'start' ? { force: false } : {});
      showError(err, null);
    } catch (e) {
      showError(err, e);
    }
    await load();
  }

  async function load() {
    let d;
    try {
      d = await api('GET', '/v1/targets');
      showError(err, null);
    } catch (e) {
      showError(err, e);
      return;
    }
    cards.replaceChildren(...(d.targets || []).map((t) => {
      const rts = t.runtimes || [];
      const pids = rts.map((r) => r.process_id).filter(Boolean).join(', ');
      const inflight = rts.reduce((n, r) => n + (r.tasks_in_flight || 0), 0);
      const paused = rts.map((r) => r.paused_until).find(Boolean);
      const exit = rts.map((r) => r.last_exit).find(Boolean);
      const local = t.source !== 'peer' && t.state !== 'not_dispatchable';
      const card = el('article', { class: 'card', dataset: { targetId: t.target_id, state: t.state } },
        el('h2', {}, t.target_id, ' ', el('span', { class: 'state' }, badge(t.state)),
          paused ? badge('paused') : null, t.dispatch_paused ? badge('dispatch paused', 'paused') : null),
        kv([
          ['adapter', t.adapter || '—'],
          ['dialect', t.dialect],
          ['source', t.source],
          ['pid', el('span', { class: 'pid', text: pids || '—' })],
          ['in flight', String(inflight)],
          ['paused until', paused ? when(paused) : null],
          ['last exit', exit ? `${exit.status} at ${when(exit.at)}` : null],
          ['capabilities', (t.capabilities || []).join(', ')],
        ]));
      if (local) {
        const start = el('button', { type: 'button', class: 'start', text: 'Start' });
        const stop = el('button', { type: 'button', class: 'stop', text: 'Stop' });
        start.addEventListener('click', () => act(t.target_id, 'start', start));
        stop.addEventListener('click', () => act(t.target_id, 'stop', stop));
        card.append(el('div', { class: 'actions' }, start, stop));
        const box = el('div');
        const det = el('details', { open: open.has(t.target_id) }, el('summary', { text: 'launch history' }), box);
        det.addEventListener('toggle', () => {
          if (det.open) { open.add(t.target_id); launches(t.target_id, box); } else open.delete(t.target_id);
        });
        if (det.open) launches(t.target_id, box);
        card.append(det);
      }
      return card;
    }));
  }
  const reload = debounce(load, 300);
  onLeave(feed.on((name, ev) => {
    // Runtimes change with their tasks: launches, readiness, ends.
    if (name !== 'task.event' || (ev && (ev.kind.startsWith('runtime.') || TERMINAL.has(ev.state) || ev.kind === 'task.running'))) reload();
  }));
  await load();
}

// Threads ------------------------------------------------------------------

async function viewThreads() {
  const err = errorBox();
  const tbody = el('tbody');
  render(el('h1', { text: 'Threads' }), err, el('div', { class: 'table-wrap' }, el('table', { id: 'thread-list' },
    el('thead', {}, el('tr', {}, ...['Thread', 'Status', 'Agent A', 'Agent B', 'Last turn to', 'Updated'].map((h) => el('th', { text: h })))),
    tbody)));
  async function load() {
    try {
      const d = await api('GET', '/v1/threads?limit=100');
      showError(err, null);
      tbody.replaceChildren(...(d.threads || []).map((t) => el('tr', { dataset: { threadId: t.thread_id } },
        el('td', { class: 'id' }, el('a', { href: `#/thread/${t.thread_id}`, text: t.thread_id })),
        el('td', {}, badge(t.status)), el('td', { text: t.agent_a_id }), el('td', { text: t.agent_b_id }),
        el('td', { text: t.last_target_agent_id || '—' }), el('td', { text: when(t.updated_at) }))));
      if (!(d.threads || []).length) tbody.append(el('tr', {}, el('td', { colspan: 6, class: 'muted', text: 'No threads.' })));
    } catch (e) {
      showError(err, e);
    }
  }
  const reload = debounce(load, 400);
  onLeave(feed.on((name, ev) => { if (name !== 'task.event' || TERMINAL.has(ev && ev.state)) reload(); }));
  await load();
}

async function viewThread(id) {
  const err = errorBox();
  const notice = el('div', { class: 'notice', role: 'status', 'aria-live': 'polite' });
  const body = el('div');
  const intent = el('input', { id: 'continue-intent', type: 'text', placeholder: 'intent (a capability of the receiver)', required: true });
  const text = el('input', { id: 'continue-text', type: 'text', placeholder: 'text' });
  const send = el('button', { type: 'submit', class: 'primary', text: 'Continue thread' });
  const form = el('form', { class: 'inline', id: 'continue-form' },
    el('div', { class: 'field' }, el('label', { for: 'continue-intent', text: 'Intent' }), intent),
    el('div', { class: 'field' }, el('label', { for: 'continue-text', text: 'Text' }), text), send);
  render(el('p', {}, el('a', { href: '#/threads', text: '← Threads' })),
    el('h1', {}, 'Thread ', el('span', { class: 'mono', text: id })), err, notice, body,
    el('h2', { text: 'Continue' }), form);
  let taskIds = new Set();
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    send.disabled = true;
    try {
      const r = await api('POST', `/v1/threads/${encodeURIComponent(id)}/continue`, { intent: intent.value.trim(), payload: { text: text.value } });
      showError(err, null);
      notice.replaceChildren('Turn created: ', el('a', { href: `#/task/${r.task.task_id}`, text: r.task.task_id }));
      load();
    } catch (ex) {
      showError(err, ex);
    }
    send.disabled = false;
  });
  async function load() {
    let d;
    try {
      d = await api('GET', `/v1/threads/${encodeURIComponent(id)}/inspect`);
      showError(err, null);
    } catch (e) {
      showError(err, e);
      return;
    }
    const t = d.thread;
    taskIds = new Set((d.turns || []).map((x) => x.task_id));
    const next = d.next_continue || {};
    body.replaceChildren(
      kv([
        ['status', badge(t.status)],
        ['agents', `${t.agent_a_id} ⇄ ${t.agent_b_id}`],
        ['next speaker', next.sender_agent_id ? `${next.sender_agent_id} → ${next.target_agent_id}` : null],
        ['session reuse', next.sender_agent_id ? (next.will_reuse_remote_session ? 'the next turn reuses its session' : 'the next turn starts a new session') : null],
        ['interruption', d.interruption_reason || t.interruption_reason],
        ['handoff', t.handoff ? `${t.handoff.turns_done ?? 0}/${t.handoff.max_turns ?? '?'} turns${t.handoff.active ? ', running' : ''}${t.handoff.stopped_reason ? `, stopped: ${t.handoff.stopped_reason}` : ''}` : null],
        ['participants', (d.participants || []).map((p) => `${p.agent_id} (${p.owner}${p.peer_id ? ` via ${p.peer_id}` : ''})`).join(', ')],
        ['updated', when(t.updated_at)],
      ]),
      el('h2', { text: 'Turns' }),
      el('div', { class: 'table-wrap' }, el('table', { id: 'turns' },
        el('thead', {}, el('tr', {}, ...['#', 'From → to', 'Status', 'Task', 'Session'].map((h) => el('th', { text: h })))),
        el('tbody', {}, (d.turns || []).map((x) => el('tr', {},
          el('td', { text: x.turn_index }), el('td', { text: `${x.sender_agent_id} → ${x.target_agent_id}` }),
          el('td', {}, badge(x.status)), el('td', { class: 'id' }, el('a', { href: `#/task/${x.task_id}`, text: x.task_id })),
          el('td', { class: 'id', text: x.remote_session_id || '—' })))))),
      el('details', {}, el('summary', { text: 'continuity' }), json(d.continuity || [])));
  }
  const reload = debounce(load, 250);
  onLeave(feed.on((name, ev) => { if (name !== 'task.event' || taskIds.has(ev.task_id) || (ev && ev.kind === 'task.created')) reload(); }));
  await load();
}

// Node ---------------------------------------------------------------------

async function viewNode() {
  const err = errorBox();
  const body = el('div');
  render(el('h1', { text: 'Node' }), err, body);
  async function load() {
    let stats; let identity; let peers = [];
    try {
      [stats, identity] = await Promise.all([api('GET', '/v1/node/stats'), api('GET', '/v1/node/identity')]);
      peers = (await api('GET', '/v1/peers').catch(() => ({ peers: [] }))).peers || [];
      showError(err, null);
    } catch (e) {
      showError(err, e);
      return;
    }
    const tree = el('ul', { class: 'tree', id: 'supervision' });
    const root = el('li', {}, el('strong', { text: stats.supervision.root }), ' (restart policy: service)');
    const services = el('ul');
    for (const s of stats.supervision.services) {
      const li = el('li', { dataset: { service: s.service } },
        el('strong', { text: s.service }), ' ', badge(s.running ? 'up' : 'down'),
        el('span', { class: 'muted' }, ` ${s.actor || ''} · restarts ${s.restarts}`));
      const kids = el('ul');
      for (const r of s.runtimes || []) {
        kids.append(el('li', { dataset: { runtime: r.id } }, `${r.kind} ${r.id}${r.subcontext_key ? ` [${r.subcontext_key}]` : ''} `,
          badge(r.running ? 'up' : 'down'), r.restarts !== undefined ? el('span', { class: 'muted', text: ` · restarts ${r.restarts}` }) : null));
      }
      if (s.subscribers !== undefined) kids.append(el('li', { text: `SSE subscribers: ${s.subscribers}` }), el('li', { text: `watchers of all tasks: ${s.watchers}` }));
      if (s.task_actors !== undefined) kids.append(el('li', { id: 'task-actors', text: `live task actors: ${s.task_actors}` }));
      if (s.service === 'peer_directory') {
        for (const p of peers) kids.append(el('li', { text: `peer ${p.peer_id || p.display_name} ${p.base_url || ''} (${p.status || 'unknown'})` }));
      }
      if (kids.children.length) li.append(kids);
      services.append(li);
    }
    root.append(services);
    tree.append(root);
    body.replaceChildren(el('div', { class: 'two' },
      el('section', {}, el('h2', { text: 'Supervision tree' }), tree),
      el('section', {},
        el('h2', { text: 'Identity' }),
        kv([['node id', el('span', { class: 'mono', text: identity.node_id })], ['version', stats.version],
          ['public key', el('span', { class: 'mono', text: `${identity.public_key.alg} ${identity.public_key.key}` })],
          ['key id', el('span', { class: 'mono', text: identity.key_id })], ['key made', when(identity.created_at)]]),
        el('h2', { text: 'Storage' }),
        kv([['commits', String(stats.storage.commits)], ['writes', String(stats.storage.writes)], ['largest batch', String(stats.storage.max_batch)]]))));
  }
  const reload = debounce(load, 500);
  onLeave(feed.on(() => reload()));
  await load();
}

// ---------- routing ----------

async function route() {
  for (const fn of cleanup) { try { fn(); } catch (_) { /* ignore */ } }
  cleanup = [];
  const hash = location.hash.replace(/^#\/?/, '') || 'tasks';
  const [view, arg] = hash.split('/');
  for (const a of document.querySelectorAll('nav a')) {
    const current = a.dataset.view === view || (a.dataset.view === 'tasks' && view === 'task') || (a.dataset.view === 'threads' && view === 'thread');
    if (current) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  const views = { tasks: viewTasks, task: () => viewTask(decodeURIComponent(arg || '')), targets: viewTargets,
    threads: viewThreads, thread: () => viewThread(decodeURIComponent(arg || '')), node: viewNode };
  const fn = views[view] || viewTasks;
  try {
    await fn();
  } catch (e) {
    render(el('div', { class: 'error', role: 'alert', text: errorText(e) }));
  }
}

function start() {
  const form = document.getElementById('token-form');
  const input = document.getElementById('token-input');
  input.value = token();
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const v = input.value.trim();
    if (v) sessionStorage.setItem(TOKEN_KEY, v); else sessionStorage.removeItem(TOKEN_KEY);
    authOk();
    feed.start();
    route();
  });
  document.getElementById('token-clear').addEventListener('click', () => {
    sessionStorage.removeItem(TOKEN_KEY);
    input.value = '';
    feed.start();
    route();
  });
  window.addEventListener('hashchange', () => { route(); main().focus(); });
  api('GET', '/v1/node/identity').then((d) => { document.getElementById('node-name').textContent = d.node_id; }).catch(() => {});
  feed.start();
  route();
}

start();
