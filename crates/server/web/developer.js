// The developer pages: API keys (create with name, project, expiry and
// rpm/tpm limits, the secret shown once, revoke), usage (tokens and cost
// per day as a chart and a table, grouped by model, key or project, a date
// range, CSV export) and the month's invoice (a table, CSV download), over
// the /v1/organization admin API with the session of an owner or admin.

import { h } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import htm from 'htm';
import { api, download } from './api.js';

const html = htm.bind(h);

/** The page a member gets instead of an owners' and admins' page. */
export function adminOnly(me) {
  return !me.admin && html`<main class="page"><p class="error" role="alert">
    Only owners and admins of ${me.organization.name} can see this page. Ask one of them for access.</p></main>`;
}

function limitsText(k) {
  const parts = [];
  if (k.rpm_limit) parts.push(`${k.rpm_limit} rpm`);
  if (k.tpm_limit) parts.push(`${k.tpm_limit.toLocaleString()} tpm`);
  return parts.join(' · ') || 'none';
}

export function Keys({ me }) {
  const [projects, setProjects] = useState([]);
  const [keys, setKeys] = useState([]);
  const [secret, setSecret] = useState(null);
  const [error, setError] = useState('');
  async function load() {
    try {
      const p = (await api('/v1/organization/projects?limit=100')).data;
      setProjects(p);
      const all = [];
      for (const project of p) {
        const k = await api(`/v1/organization/projects/${project.id}/api_keys?limit=100`);
        for (const key of k.data) all.push({ ...key, project: project.name });
      }
      setKeys(all);
    } catch (err) { setError(err.message); }
  }
  useEffect(() => { if (me.admin) load(); }, []);
  if (!me.admin) return adminOnly(me);
  async function create(event) {
    event.preventDefault();
    const form = new FormData(event.target);
    setError('');
    try {
      const body = { name: form.get('name') || 'key' };
      const expires = form.get('expires');
      if (expires) body.expires_at = Math.floor(Date.parse(`${expires}T23:59:59Z`) / 1000);
      for (const limit of ['rpm_limit', 'tpm_limit']) {
        const n = parseInt(form.get(limit), 10);
        if (!Number.isNaN(n) && n > 0) body[limit] = n;
      }
      const key = await api(`/v1/organization/projects/${form.get('project')}/api_keys`, {
        method: 'POST', body,
      });
      setSecret(key.value);
      event.target.reset();
      load();
    } catch (err) { setError(err.message); }
  }
  async function revoke(key) {
    if (!confirm(`Revoke \u201c${key.name}\u201d? Programs using it stop working.`)) return;
    try {
      await api(`/v1/organization/projects/${key.project_id}/api_keys/${key.id}`, { method: 'DELETE' });
      load();
    } catch (err) { setError(err.message); }
  }
  return html`<main class="page">
    <h1>API keys</h1>
    <form class="inline" onSubmit=${create} aria-label="Create API key">
      <label>Key name<input name="name" required /></label>
      <label>Project<select name="project" aria-label="Project">
        ${projects.map((p) => html`<option value=${p.id}>${p.name}</option>`)}</select></label>
      <label>Expires (optional)<input name="expires" type="date" aria-label="Expires" /></label>
      <label>Requests per minute<input name="rpm_limit" type="number" min="1" step="1" placeholder="no limit"
        aria-label="Requests per minute limit" /></label>
      <label>Tokens per minute<input name="tpm_limit" type="number" min="1" step="1" placeholder="no limit"
        aria-label="Tokens per minute limit" /></label>
      <button type="submit" class="primary">Create key</button>
    </form>
    ${secret && html`<div class="secret" role="status">
      <p>Your new secret key. Copy it now: it is shown only once.</p>
      <code aria-label="New secret key">${secret}</code>
      <button type="button" onClick=${() => navigator.clipboard.writeText(secret)}>Copy key</button>
      <button type="button" class="secondary" onClick=${() => setSecret(null)}>Done</button></div>`}
    ${error && html`<p class="error" role="alert">${error}</p>`}
    <table>
      <thead><tr><th>Name</th><th>Key</th><th>Project</th><th>Status</th><th>Limits</th><th>Expires</th><th>Created</th>
        <th><span class="visually-hidden">Actions</span></th></tr></thead>
      <tbody>${keys.map((k) => html`<tr key=${k.id}>
        <td>${k.name}</td><td><code>${k.redacted_value}</code></td><td>${k.project}</td><td>${k.status}</td>
        <td>${limitsText(k)}</td>
        <td>${k.expires_at ? new Date(k.expires_at * 1000).toISOString().slice(0, 10) : 'never'}</td>
        <td>${new Date(k.created_at * 1000).toLocaleDateString()}</td>
        <td>${k.status === 'active' && html`<button type="button" class="small" aria-label=${`Revoke ${k.name}`}
          onClick=${() => revoke(k)}>Revoke</button>`}</td></tr>`)}</tbody>
    </table>
    <p class="note">Use a key with any OpenAI SDK: base URL <code>${location.origin}/v1</code>.</p>
  </main>`;
}

const DAY = 86400;

function dayInput(unix) { return new Date(unix * 1000).toISOString().slice(0, 10); }

function Chart({ rows }) {
  const max = Math.max(1, ...rows.map((r) => r.input + r.output));
  const w = 640; const hgt = 160; const bar = w / Math.max(1, rows.length);
  return html`<svg class="chart" viewBox=${`0 0 ${w} ${hgt + 20}`} role="img"
    aria-label="Tokens per day (input and output)">
    ${rows.map((r, i) => {
      const hi = ((r.input) / max) * hgt; const ho = ((r.output) / max) * hgt;
      return html`<g key=${r.day}>
        <rect class="input" x=${i * bar + 2} y=${hgt - hi - ho} width=${bar - 4} height=${hi}><title>${r.day}: ${r.input} input</title></rect>
        <rect class="output" x=${i * bar + 2} y=${hgt - ho} width=${bar - 4} height=${ho}><title>${r.day}: ${r.output} output</title></rect>
        <text x=${i * bar + bar / 2} y=${hgt + 14} text-anchor="middle">${r.day.slice(5)}</text></g>`;
    })}</svg>`;
}

const GROUPS = {
  model: { param: 'model', cost: 'line_item', label: 'Model' },
  key: { param: 'api_key_id', cost: null, label: 'Key' },
  project: { param: 'project_id', cost: 'project_id', label: 'Project' },
  endpoint: { param: 'endpoint', cost: null, label: 'Endpoint' },
};

/** Per (day, group) rows of grouped usage, with cost where it can be grouped. */
function grouped(usage, costs, group, names) {
  const g = GROUPS[group];
  const cost = {};
  for (const b of (costs ? costs.data : [])) {
    for (const r of b.results) cost[`${b.start_time}|${r[g.cost]}`] = (cost[`${b.start_time}|${r[g.cost]}`] || 0) + r.amount.value;
  }
  const rows = [];
  for (const b of usage.data) for (const r of b.results) {
    const id = r[g.param] || '(none)';
    rows.push({ day: dayInput(b.start_time), id, name: names[id] || id, requests: r.num_model_requests,
      input: r.input_tokens, output: r.output_tokens || 0,
      cost: g.cost ? (cost[`${b.start_time}|${r[g.param]}`] || 0) : null });
  }
  return rows;
}

/** `page` with `extra`'s results added to the bucket of the same start (the
 * embeddings page beside the completions one: same query, same buckets). */
function withResults(page, extra) {
  const more = {};
  for (const b of extra.data) more[b.start_time] = b.results;
  return { ...page, data: page.data.map((b) => ({ ...b, results: [...b.results, ...(more[b.start_time] || [])] })) };
}

function totalsOf(rows) {
  const per = {};
  for (const r of rows) {
    const t = per[r.id] || (per[r.id] = { id: r.id, name: r.name, requests: 0, input: 0, output: 0, cost: r.cost === null ? null : 0 });
    t.requests += r.requests; t.input += r.input; t.output += r.output;
    if (t.cost !== null) t.cost += r.cost || 0;
  }
  return Object.values(per);
}

export function Usage({ me }) {
  const now = Math.floor(Date.now() / 1000);
  const [start, setStart] = useState(dayInput(now - 6 * DAY));
  const [end, setEnd] = useState(dayInput(now));
  const [group, setGroup] = useState('model');
  const [rows, setRows] = useState(null);
  const [groupRows, setGroupRows] = useState([]);
  const [error, setError] = useState('');
  async function load() {
    setError('');
    try {
      const from = Math.floor(Date.parse(`${start}T00:00:00Z`) / 1000);
      const to = Math.floor(Date.parse(`${end}T00:00:00Z`) / 1000) + DAY;
      if (!(to > from)) throw new Error('The start date must not be after the end date.');
      const days = Math.min(31, Math.max(1, Math.round((to - from) / DAY)));
      const q = `start_time=${from}&end_time=${to}&bucket_width=1d&limit=${days}`;
      const g = GROUPS[group];
      const [chat, chatByGroup, embeddings, embeddingsByGroup, costs, groupCosts] = await Promise.all([
        api(`/v1/organization/usage/completions?${q}`),
        api(`/v1/organization/usage/completions?${q}&group_by=${g.param}`),
        api(`/v1/organization/usage/embeddings?${q}`),
        api(`/v1/organization/usage/embeddings?${q}&group_by=${g.param}`),
        api(`/v1/organization/costs?${q}`),
        g.cost ? api(`/v1/organization/costs?${q}&group_by=${g.cost}`) : Promise.resolve(null),
      ]);
      // Embeddings count beside generation (input tokens only).
      const usage = withResults(chat, embeddings);
      const byGroup = withResults(chatByGroup, embeddingsByGroup);
      const names = {};
      if (group === 'key' || group === 'project') {
        const projects = (await api('/v1/organization/projects?limit=100')).data;
        for (const p of projects) {
          names[p.id] = p.name;
          if (group === 'key') {
            const keys = await api(`/v1/organization/projects/${p.id}/api_keys?limit=100`);
            for (const k of keys.data) names[k.id] = `${k.name} (${p.name})`;
          }
        }
      }
      const cost = {};
      for (const b of costs.data) cost[b.start_time] = b.results.reduce((s, r) => s + r.amount.value, 0);
      setRows(usage.data.map((b) => {
        const sum = (f) => b.results.reduce((s, r) => s + (r[f] || 0), 0);
        return { day: dayInput(b.start_time), requests: sum('num_model_requests'),
          input: sum('input_tokens'), output: sum('output_tokens'), cost: cost[b.start_time] || 0 };
      }));
      setGroupRows(grouped(byGroup, groupCosts, group, names));
    } catch (err) { setError(err.message); }
  }
  useEffect(() => { if (me.admin) load(); }, [start, end, group]);
  if (!me.admin) return adminOnly(me);
  const label = GROUPS[group].label;
  function csv() {
    const lines = [`date,${group},requests,input_tokens,output_tokens,cost_usd`];
    const quote = (v) => (/[",\n]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v);
    for (const r of groupRows) {
      lines.push([r.day, quote(String(r.name)), r.requests, r.input, r.output, r.cost === null ? '' : r.cost].join(','));
    }
    download(`usage-by-${group}-${start}-${end}.csv`, 'text/csv', `${lines.join('\n')}\n`);
  }
  const total = (rows || []).reduce((t, r) => ({ requests: t.requests + r.requests,
    tokens: t.tokens + r.input + r.output, cost: t.cost + r.cost }), { requests: 0, tokens: 0, cost: 0 });
  return html`<main class="page">
    <h1>Usage</h1>
    <form class="inline" onSubmit=${(e) => { e.preventDefault(); load(); }} aria-label="Date range">
      <label>From<input type="date" value=${start} onChange=${(e) => setStart(e.target.value)} /></label>
      <label>To<input type="date" value=${end} onChange=${(e) => setEnd(e.target.value)} /></label>
      <label>Group by<select aria-label="Group by" value=${group} onChange=${(e) => setGroup(e.target.value)}>
        <option value="model">Model</option><option value="key">API key</option><option value="project">Project</option>
        <option value="endpoint">Endpoint</option>
      </select></label>
      <button type="submit" class="secondary">Refresh</button>
      <button type="button" class="secondary" onClick=${csv} disabled=${!rows}>Export CSV</button>
    </form>
    ${error && html`<p class="error" role="alert">${error}</p>`}
    ${rows && html`<p class="totals" aria-label="Totals">${total.requests} requests · ${total.tokens.toLocaleString()} tokens ·
      $${total.cost.toFixed(6)}</p>
      <${Chart} rows=${rows} />
      <table aria-label="Usage per day"><thead><tr><th>Day</th><th class="num">Requests</th><th class="num">Input tokens</th>
        <th class="num">Output tokens</th><th class="num">Cost (USD)</th></tr></thead>
      <tbody>${rows.map((r) => html`<tr key=${r.day}><td>${r.day}</td><td class="num">${r.requests}</td><td class="num">${r.input}</td>
        <td class="num">${r.output}</td><td class="num">${r.cost.toFixed(6)}</td></tr>`)}</tbody></table>
      <h2>By ${label.toLowerCase()}</h2>
      <table aria-label=${`Usage by ${label.toLowerCase()}`}><thead><tr><th>${label}</th><th class="num">Requests</th>
        <th class="num">Input tokens</th><th class="num">Output tokens</th><th class="num">Cost (USD)</th></tr></thead>
      <tbody>${totalsOf(groupRows).map((m) => html`<tr key=${m.id}><td>${m.name}</td><td class="num">${m.requests}</td>
        <td class="num">${m.input}</td><td class="num">${m.output}</td>
        <td class="num">${m.cost === null ? '—' : m.cost.toFixed(6)}</td></tr>`)}</tbody></table>`}
  </main>`;
}

function thisMonth() { return new Date().toISOString().slice(0, 7); }

/** The month's invoice (GET /v1/organization/invoices/{month}) as a table. */
export function Invoice({ me }) {
  const [month, setMonth] = useState(thisMonth());
  const [invoice, setInvoice] = useState(null);
  const [projects, setProjects] = useState({});
  const [error, setError] = useState('');
  async function load() {
    setError('');
    try {
      const names = {};
      for (const p of (await api('/v1/organization/projects?limit=100')).data) names[p.id] = p.name;
      setProjects(names);
      setInvoice(await api(`/v1/organization/invoices/${month}`));
    } catch (err) { setInvoice(null); setError(err.message); }
  }
  useEffect(() => { if (me.admin && /^\d{4}-\d{2}$/.test(month)) load(); }, [month]);
  if (!me.admin) return adminOnly(me);
  async function csv() {
    try {
      const res = await fetch(`/v1/organization/invoices/${month}?format=csv`, { credentials: 'same-origin' });
      if (!res.ok) throw new Error(`The server answered ${res.status}.`);
      download(`invoice-${month}.csv`, 'text/csv', await res.text());
    } catch (err) { setError(err.message); }
  }
  const lines = invoice ? invoice.lines : [];
  return html`<main class="page">
    <h1>Invoice</h1>
    <form class="inline" onSubmit=${(e) => { e.preventDefault(); load(); }} aria-label="Invoice month">
      <label>Month<input type="month" aria-label="Month" value=${month} onChange=${(e) => setMonth(e.target.value)} /></label>
      <button type="submit" class="secondary">Refresh</button>
      <button type="button" class="secondary" onClick=${csv} disabled=${!invoice}>Download CSV</button>
    </form>
    ${error && html`<p class="error" role="alert">${error}</p>`}
    ${invoice && html`<p class="note">${me.organization.name} · ${month} (UTC) · ${String(invoice.currency || 'usd').toUpperCase()}; amounts are exact.</p>
      <table aria-label="Invoice lines"><thead><tr><th>Project</th><th>Model</th><th class="num">Requests</th>
        <th class="num">Prompt tokens</th><th class="num">Cached tokens</th><th class="num">Completion tokens</th>
        <th class="num">Amount (USD)</th></tr></thead>
      <tbody>${lines.map((l) => html`<tr key=${`${l.project}|${l.model}`}><td title=${l.project}>${projects[l.project] || l.project}</td><td>${l.model}</td>
        <td class="num">${l.requests}</td><td class="num">${l.usage.prompt_tokens}</td><td class="num">${l.usage.cached_tokens}</td>
        <td class="num">${l.usage.completion_tokens}</td><td class="num">${l.amount}</td></tr>`)}
        ${!lines.length && html`<tr><td colspan="7">No usage this month.</td></tr>`}</tbody>
      <tfoot><tr><td colspan="6">Total</td><td class="num" aria-label="Invoice total">${invoice.total}</td></tr></tfoot></table>`}
  </main>`;
}
