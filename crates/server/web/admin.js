// The admin page (owners and admins; members see a "not allowed" page and
// get 403s from /api/admin): sign-ups waiting for approval (approve or
// reject), members with their role and plan (change a role, assign a plan,
// remove), the plans, the price table (set a price as
// `parlance prices set` does), each project's guardrails (moderated input
// and output) and the backends with their health (/api/status). Every
// change is audited by the server.

import { h } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import htm from 'htm';
import { api } from './api.js';
import { adminOnly } from './developer.js';

const html = htm.bind(h);

const ROLES = ['owner', 'admin', 'member', 'reader'];

/** A plan's quota ({unit, limit}) in words. */
function quotaText(plan) {
  const q = plan.quota || {};
  if (q.unit === 'unlimited' || q.limit === undefined) return 'unlimited';
  return `${Number(q.limit).toLocaleString()} ${q.unit} / month`;
}

function modelsText(models) {
  if (models === 'all') return 'all';
  return models && models.only ? models.only.join(', ') : '';
}

function Pending({ say, onDecided }) {
  const [people, setPeople] = useState(null);
  const load = () => api('/api/admin/pending').then((r) => setPeople(r.data)).catch((e) => say(e.message, true));
  useEffect(() => { load(); }, []);
  async function decide(p, approve) {
    if (!approve && !confirm(`Reject ${p.email}? Their account is deleted.`)) return;
    try {
      if (approve) await api(`/api/admin/pending/${p.id}/approve`, { method: 'POST', body: {} });
      else await api(`/api/admin/pending/${p.id}`, { method: 'DELETE' });
      say(approve ? `${p.email} was approved and may sign in now.` : `${p.email} was rejected.`);
    } catch (err) { say(err.message, true); }
    load();
    onDecided();
  }
  return html`<section aria-labelledby="pending-h"><h2 id="pending-h">Waiting for approval</h2>
    <table aria-label="Pending sign-ups"><thead><tr><th>Name</th><th>Email</th><th>Signed up</th>
      <th><span class="visually-hidden">Actions</span></th></tr></thead>
    <tbody>${(people || []).map((p) => html`<tr key=${p.id}><td>${p.name}</td><td>${p.email}</td>
      <td>${new Date(p.requested_at * 1000).toISOString().replace('T', ' ').slice(0, 16)}</td>
      <td><button type="button" class="small" aria-label=${`Approve ${p.email}`} onClick=${() => decide(p, true)}>Approve</button>
        ${' '}<button type="button" class="small" aria-label=${`Reject ${p.email}`} onClick=${() => decide(p, false)}>Reject</button></td></tr>`)}
      ${people && !people.length && html`<tr><td colspan="4">No one is waiting.</td></tr>`}</tbody></table>
    <p class="note">New people wait here when sign-up needs approval (<code>PARLANCE_SIGNUP=approval</code>, the default).</p>
  </section>`;
}

function Invites({ me, say }) {
  const [invites, setInvites] = useState(null);
  const [link, setLink] = useState('');
  const load = () => api('/api/admin/invites').then((r) => setInvites(r.data)).catch((e) => say(e.message, true));
  useEffect(() => { load(); }, []);
  async function create(event) {
    event.preventDefault();
    const form = new FormData(event.target);
    try {
      const invite = await api('/api/admin/invites', { method: 'POST', body: { email: form.get('email'), role: form.get('role') } });
      setLink(location.origin + invite.invite_url);
      say(`Invited ${invite.email}: hand them the link below (it is shown once).`);
      event.target.reset();
    } catch (err) { say(err.message, true); }
    load();
  }
  async function remove(i) {
    try { await api(`/api/admin/invites/${i.id}`, { method: 'DELETE' }); say(`The invite for ${i.email} was deleted.`); } catch (err) { say(err.message, true); }
    load();
  }
  return html`<section aria-labelledby="invites-h"><h2 id="invites-h">Invites</h2>
    <form onSubmit=${create} aria-label="Invite someone">
      <label>Email<input name="email" type="email" required /></label>
      <label>Role<select name="role">${['member', 'reader', 'admin', ...(me.role === 'owner' ? ['owner'] : [])].map((r) => html`<option value=${r}>${r}</option>`)}</select></label>
      <button type="submit">Invite</button>
    </form>
    ${link && html`<p class="note">One-time link: <input aria-label="Invite link" readonly value=${link} size="60" /></p>`}
    <table aria-label="Invites"><thead><tr><th>Email</th><th>Role</th><th>Status</th>
      <th><span class="visually-hidden">Actions</span></th></tr></thead>
    <tbody>${(invites || []).map((i) => html`<tr key=${i.id}><td>${i.email}</td><td>${i.role}</td><td>${i.status}</td>
      <td>${i.status !== 'accepted' && html`<button type="button" class="small" aria-label=${`Delete the invite for ${i.email}`} onClick=${() => remove(i)}>Delete</button>`}</td></tr>`)}
      ${invites && !invites.length && html`<tr><td colspan="4">No invites.</td></tr>`}</tbody></table>
    <p class="note">There is no mail: send the link yourself. Whoever signs up through it with the invited email, or signs in from it with an account they already have, joins with the role, without waiting for approval.</p>
  </section>`;
}

function Members({ me, plans, say, version }) {
  const [members, setMembers] = useState([]);
  const load = () => api('/api/admin/members').then((r) => setMembers(r.data)).catch((e) => say(e.message, true));
  useEffect(() => { load(); }, [version]);
  async function change(m, what, value) {
    try {
      if (what === 'role') await api(`/api/admin/members/${m.id}`, { method: 'PATCH', body: { role: value } });
      else await api(`/api/admin/members/${m.id}/plan`, { method: 'PUT', body: { plan: value } });
      say(`${m.email}: ${what} is now ${value}.`);
    } catch (err) { say(err.message, true); }
    load();
  }
  async function remove(m) {
    if (!confirm(`Remove ${m.email} from ${me.organization.name}?`)) return;
    try {
      await api(`/api/admin/members/${m.id}`, { method: 'DELETE' });
      say(`${m.email} was removed.`);
    } catch (err) { say(err.message, true); }
    load();
  }
  return html`<section aria-labelledby="members-h"><h2 id="members-h">Members and roles</h2>
    <table aria-label="Members"><thead><tr><th>Name</th><th>Email</th><th>Role</th><th>Plan</th>
      <th><span class="visually-hidden">Actions</span></th></tr></thead>
    <tbody>${members.map((m) => html`<tr key=${m.id}>
      <td>${m.name}${m.you ? ' (you)' : ''}</td><td>${m.email}</td>
      <td><select aria-label=${`Role of ${m.email}`} value=${m.role} onChange=${(e) => change(m, 'role', e.target.value)}>
        ${ROLES.map((r) => html`<option value=${r}>${r}</option>`)}</select></td>
      <td><select aria-label=${`Plan of ${m.email}`} value=${m.plan} onChange=${(e) => change(m, 'plan', e.target.value)}>
        ${plans.map((p) => html`<option value=${p.id}>${p.name}</option>`)}</select></td>
      <td>${!m.you && html`<button type="button" class="small" aria-label=${`Remove ${m.email}`}
        onClick=${() => remove(m)}>Remove</button>`}</td></tr>`)}</tbody></table>
  </section>`;
}

function Plans({ plans }) {
  return html`<section aria-labelledby="plans-h"><h2 id="plans-h">Plans</h2>
    <table aria-label="Plans"><thead><tr><th>Plan</th><th>Id</th><th class="num">Price / month (USD)</th><th>Quota</th><th>Models</th></tr></thead>
    <tbody>${plans.map((p) => html`<tr key=${p.id}><td>${p.name}</td><td><code>${p.id}</code></td>
      <td class="num">${p.monthly_price}</td><td>${quotaText(p)}</td>
      <td>${modelsText(p.models)}</td></tr>`)}</tbody></table>
    <p class="note">Define plans with <code>parlance plan define</code>; assign them to members above.</p>
  </section>`;
}

function Prices({ say }) {
  const [prices, setPrices] = useState([]);
  const load = () => api('/api/admin/prices').then((r) => setPrices(r.data)).catch((e) => say(e.message, true));
  useEffect(() => { load(); }, []);
  async function set(event) {
    event.preventDefault();
    const form = new FormData(event.target);
    const body = { model: form.get('model'), input: form.get('input'), output: form.get('output'), per: '1m' };
    if (form.get('cached_input')) body.cached_input = form.get('cached_input');
    try {
      await api('/api/admin/prices', { method: 'POST', body });
      say(`The price of ${body.model} is set.`);
      event.target.reset();
    } catch (err) { say(err.message, true); }
    load();
  }
  return html`<section aria-labelledby="prices-h"><h2 id="prices-h">Prices</h2>
    <form class="inline" onSubmit=${set} aria-label="Set a price">
      <label>Model (* for the default)<input name="model" required /></label>
      <label>Input, USD per 1M tokens<input name="input" required inputmode="decimal" /></label>
      <label>Cached input (optional)<input name="cached_input" inputmode="decimal" /></label>
      <label>Output, USD per 1M tokens<input name="output" required inputmode="decimal" /></label>
      <button type="submit" class="primary">Set price</button>
    </form>
    <table aria-label="Price table"><thead><tr><th>Model</th><th>Since</th><th class="num">Input / 1M</th>
      <th class="num">Cached input / 1M</th><th class="num">Output / 1M</th></tr></thead>
    <tbody>${prices.map((p) => html`<tr key=${`${p.model}|${p.effective_at_ms}`}><td>${p.model}</td>
      <td>${new Date(p.effective_at_ms).toISOString().replace('T', ' ').slice(0, 16)}</td>
      <td class="num">${p.input_per_1m_usd}</td><td class="num">${p.cached_input_per_1m_usd}</td>
      <td class="num">${p.output_per_1m_usd}</td></tr>`)}
      ${!prices.length && html`<tr><td colspan="5">No prices recorded: the built-in default applies.</td></tr>`}</tbody></table>
    <p class="note">A new price applies to requests that start after it; older prices stay recorded.</p>
  </section>`;
}

function Guardrails({ say }) {
  const [projects, setProjects] = useState(null);
  const load = () => api('/api/admin/projects').then((r) => setProjects(r.data)).catch((e) => say(e.message, true));
  useEffect(() => { load(); }, []);
  async function change(p, which, on) {
    const body = { ...p.guardrails, [which]: on };
    // Shown at once: a render before the reload below (the notice) would
    // otherwise put the old value back in the box for a moment.
    setProjects((all) => all.map((q) => (q.id === p.id ? { ...q, guardrails: body } : q)));
    try {
      await api(`/api/admin/projects/${p.id}/guardrails`, { method: 'PUT', body });
      say(`${p.name}: ${which} moderation is ${on ? 'on' : 'off'}.`);
    } catch (err) { say(err.message, true); }
    load();
  }
  const box = (p, which, label) => html`<input type="checkbox" aria-label=${`${label} of ${p.name}`}
    checked=${p.guardrails[which]} onChange=${(e) => change(p, which, e.target.checked)} />`;
  return html`<section aria-labelledby="guardrails-h"><h2 id="guardrails-h">Guardrails</h2>
    <table aria-label="Guardrails"><thead><tr><th>Project</th><th>Moderate input</th><th>Moderate output</th></tr></thead>
    <tbody>${(projects || []).map((p) => html`<tr key=${p.id}><td>${p.name}</td>
      <td>${box(p, 'input', 'Moderate input')}</td><td>${box(p, 'output', 'Moderate output')}</td></tr>`)}</tbody></table>
    <p class="note">A flagged request is refused (<code>content_policy_violation</code>); a flagged whole answer ends with <code>content_filter</code>. Needs an embedding model (<code>--embedding-model</code>); web chats use the <code>chat</code> project.</p>
  </section>`;
}

function Backends({ say }) {
  const [status, setStatus] = useState(null);
  useEffect(() => { api('/api/status').then(setStatus).catch((e) => say(e.message, true)); }, []);
  const rows = [];
  for (const m of (status ? status.models : [])) for (const b of m.backends || []) rows.push({ model: m.name, ...b });
  const pct = (v) => (typeof v === 'number' ? `${v}%` : '—');
  return html`<section aria-labelledby="backends-h"><h2 id="backends-h">Backends and health</h2>
    ${status && html`<p>Overall: <strong class=${status.status === 'operational' ? 'status-ok' : 'status-bad'}>${status.status}</strong></p>`}
    <table aria-label="Backends"><thead><tr><th>Model</th><th>Backend</th><th>Kind</th><th>State</th><th>Healthy</th>
      <th class="num">Latency (ms)</th><th class="num">Error rate</th><th class="num">In flight</th><th class="num">Uptime 24 h</th></tr></thead>
    <tbody>${rows.map((b) => html`<tr key=${`${b.model}|${b.id}`}><td>${b.model}</td><td>${b.id}</td><td>${b.kind}</td>
      <td>${b.state}</td><td class=${b.healthy ? 'status-ok' : 'status-bad'}>${b.healthy ? 'yes' : 'no'}</td>
      <td class="num">${b.latency_ms === null || b.latency_ms === undefined ? '—' : b.latency_ms}</td>
      <td class="num">${(b.error_rate * 100).toFixed(2)}%</td><td class="num">${b.outstanding}</td>
      <td class="num">${pct(b.uptime && b.uptime['24h'])}</td></tr>`)}</tbody></table>
    <p class="note">The public page is <a href="/status">/status</a>.</p>
  </section>`;
}

export function Admin({ me }) {
  const [plans, setPlans] = useState([]);
  const [message, setMessage] = useState(null);
  const [version, setVersion] = useState(0);
  useEffect(() => { if (me.admin) api('/api/admin/plans').then((r) => setPlans(r.data)).catch(() => {}); }, []);
  if (!me.admin) return adminOnly(me);
  const say = (text, bad = false) => setMessage({ text, bad });
  return html`<main class="page">
    <h1>Admin</h1>
    ${message && html`<p class=${message.bad ? 'error' : 'note'} role=${message.bad ? 'alert' : 'status'}>${message.text}</p>`}
    <${Pending} say=${say} onDecided=${() => setVersion((v) => v + 1)} />
    <${Members} me=${me} plans=${plans} say=${say} version=${version} />
    <${Invites} me=${me} say=${say} />
    <${Plans} plans=${plans} />
    <${Prices} say=${say} />
    <${Guardrails} say=${say} />
    <${Backends} say=${say} />
  </main>`;
}
