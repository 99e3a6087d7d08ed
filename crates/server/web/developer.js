// The developer pages: API keys (create with name and project, the secret
// shown once, revoke) and usage (tokens and cost per day as a chart and a
// table, by model, CSV export), over the /v1/organization admin API with
// the session of an owner or admin.

import { h } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import htm from 'htm';
import { api, download } from './api.js';

const html = htm.bind(h);

function adminOnly(me) {
  return !me.admin && html`<main class="page"><p class="error" role="alert">
    Only owners and admins of ${me.organization.name} can see this page. Ask one of them for access.</p></main>`;
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
      const key = await api(`/v1/organization/projects/${form.get('project')}/api_keys`, {
        method: 'POST', body: { name: form.get('name') || 'key' },
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
      <button type="submit" class="primary">Create key</button>
    </form>
    ${secret && html`<div class="secret" role="status">
      <p>Your new secret key. Copy it now: it is shown only once.</p>
      <code aria-label="New secret key">${secret}</code>
      <button type="button" onClick=${() => navigator.clipboard.writeText(secret)}>Copy key</button>
      <button type="button" class="secondary" onClick=${() => setSecret(null)}>Done</button></div>`}
    ${error && html`<p class="error" role="alert">${error}</p>`}
    <table>
      <thead><tr><th>Name</th><th>Key</th><th>Project</th><th>Status</th><th>Created</th><th></th></tr></thead>
      <tbody>${keys.map((k) => html`<tr key=${k.id}>
        <td>${k.name}</td><td><code>${k.redacted_value}</code></td><td>${k.project}</td><td>${k.status}</td>
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

export function Usage({ me }) {
  const now = Math.floor(Date.now() / 1000);
  const [start, setStart] = useState(dayInput(now - 6 * DAY));
  const [end, setEnd] = useState(dayInput(now));
  const [rows, setRows] = useState(null);
  const [byModel, setByModel] = useState([]);
  const [error, setError] = useState('');
  async function load() {
    setError('');
    try {
      const from = Math.floor(Date.parse(`${start}T00:00:00Z`) / 1000);
      const to = Math.floor(Date.parse(`${end}T00:00:00Z`) / 1000) + DAY;
      const days = Math.min(31, Math.max(1, Math.round((to - from) / DAY)));
      const q = `start_time=${from}&end_time=${to}&bucket_width=1d&limit=${days}`;
      const usage = await api(`/v1/organization/usage/completions?${q}`);
      const models = await api(`/v1/organization/usage/completions?${q}&group_by=model`);
      const costs = await api(`/v1/organization/costs?${q}`);
      const cost = {};
      for (const b of costs.data) cost[b.start_time] = b.results.reduce((s, r) => s + r.amount.value, 0);
      setRows(usage.data.map((b) => {
        const sum = (f) => b.results.reduce((s, r) => s + r[f], 0);
        return { day: dayInput(b.start_time), requests: sum('num_model_requests'),
          input: sum('input_tokens'), output: sum('output_tokens'), cost: cost[b.start_time] || 0 };
      }));
      const per = {};
      for (const b of models.data) for (const r of b.results) {
        const m = per[r.model] || (per[r.model] = { model: r.model, requests: 0, input: 0, output: 0 });
        m.requests += r.num_model_requests; m.input += r.input_tokens; m.output += r.output_tokens;
      }
      setByModel(Object.values(per));
    } catch (err) { setError(err.message); }
  }
  useEffect(() => { if (me.admin) load(); }, [start, end]);
  if (!me.admin) return adminOnly(me);
  function csv() {
    const lines = ['date,requests,input_tokens,output_tokens,cost_usd'];
    for (const r of rows || []) lines.push([r.day, r.requests, r.input, r.output, r.cost].join(','));
    download(`usage-${start}-${end}.csv`, 'text/csv', `${lines.join('\n')}\n`);
  }
  const total = (rows || []).reduce((t, r) => ({ requests: t.requests + r.requests,
    tokens: t.tokens + r.input + r.output, cost: t.cost + r.cost }), { requests: 0, tokens: 0, cost: 0 });
  return html`<main class="page">
    <h1>Usage</h1>
    <form class="inline" onSubmit=${(e) => { e.preventDefault(); load(); }} aria-label="Date range">
      <label>From<input type="date" value=${start} onChange=${(e) => setStart(e.target.value)} /></label>
      <label>To<input type="date" value=${end} onChange=${(e) => setEnd(e.target.value)} /></label>
      <button type="submit" class="secondary">Refresh</button>
      <button type="button" class="secondary" onClick=${csv} disabled=${!rows}>Export CSV</button>
    </form>
    ${error && html`<p class="error" role="alert">${error}</p>`}
    ${rows && html`<p class="totals" aria-label="Totals">${total.requests} requests · ${total.tokens.toLocaleString()} tokens ·
      $${total.cost.toFixed(6)}</p>
      <${Chart} rows=${rows} />
      <table aria-label="Usage per day"><thead><tr><th>Day</th><th>Requests</th><th>Input tokens</th><th>Output tokens</th><th>Cost (USD)</th></tr></thead>
      <tbody>${rows.map((r) => html`<tr key=${r.day}><td>${r.day}</td><td>${r.requests}</td><td>${r.input}</td>
        <td>${r.output}</td><td>${r.cost.toFixed(6)}</td></tr>`)}</tbody></table>
      <h2>By model</h2>
      <table aria-label="Usage by model"><thead><tr><th>Model</th><th>Requests</th><th>Input tokens</th><th>Output tokens</th></tr></thead>
      <tbody>${byModel.map((m) => html`<tr key=${m.model}><td>${m.model}</td><td>${m.requests}</td><td>${m.input}</td><td>${m.output}</td></tr>`)}</tbody></table>`}
  </main>`;
}
