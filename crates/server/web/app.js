// The app's shell: who is signed in (GET /api/me), the sign-up / sign-in
// form (a sign-up waiting for approval, 202, says so and turns the form to
// sign-in; one opened from an invite link, #/signup?invite=…, joins at once;
// signing in from it, or opening it signed in, joins with an existing
// account), and the pages by hash route: #/ chat, #/keys API keys, #/usage
// usage and costs, #/invoice the month's invoice, #/admin members, plans,
// prices and backends.

import { h, render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import htm from 'htm';
import { api } from './api.js';
import { Chat } from './chat.js';
import { Invoice, Keys, Usage } from './developer.js';
import { Admin } from './admin.js';

const html = htm.bind(h);

// The token of an invite link (#/signup?invite=…), if the page was opened
// from one: signing up with it joins at once, with the invited role.
function inviteToken() {
  const query = location.hash.split('?')[1] || '';
  return new URLSearchParams(query).get('invite') || '';
}

function Auth({ onSignedIn }) {
  const invite = inviteToken();
  const [mode, setMode] = useState('signup');
  const [error, setError] = useState('');
  const [notice, setNotice] = useState('');
  const [busy, setBusy] = useState(false);
  async function submit(event) {
    event.preventDefault();
    const form = new FormData(event.target);
    const body = { email: form.get('email'), password: form.get('password') };
    if (mode === 'signup') body.name = form.get('name');
    if (invite) body.invite = invite;
    setBusy(true);
    setError('');
    setNotice('');
    try {
      const answer = await api(`/api/auth/${mode}`, { method: 'POST', body });
      if (answer && answer.status === 'pending') {
        // Signed up, but an owner or admin approves new people first.
        setMode('login');
        setNotice(answer.message);
      } else {
        // The link is used: leave it, or the page would offer it again.
        if (invite) location.hash = '#/';
        onSignedIn(answer);
      }
    } catch (err) {
      // A pending approval (403) and a lock-out (429) say why in words.
      setError(err.message);
    } finally {
      setBusy(false);
    }
  }
  const signup = mode === 'signup';
  return html`<main class="auth">
    <h1>Parlance</h1>
    <form onSubmit=${submit} aria-label=${signup ? 'Sign up' : 'Sign in'}>
      <h2>${signup ? (invite ? 'You are invited: create your account' : 'Create your account') : (invite ? 'You are invited: sign in to join' : 'Sign in')}</h2>
      ${signup && html`<label>Name<input name="name" autocomplete="name" /></label>`}
      <label>Email<input name="email" type="email" required autocomplete="email" /></label>
      <label>Password<input name="password" type="password" required minlength=${signup ? 8 : 1}
        autocomplete=${signup ? 'new-password' : 'current-password'} /></label>
      ${notice && html`<p class="note" role="status">${notice}</p>`}
      ${error && html`<p class="error" role="alert">${error}</p>`}
      <button type="submit" disabled=${busy}>${signup ? 'Sign up' : 'Sign in'}</button>
      <p>${signup ? 'Already have an account? ' : 'New here? '}
        <button type="button" class="link" onClick=${() => { setMode(signup ? 'login' : 'signup'); setError(''); setNotice(''); }}>
          ${signup ? 'Sign in instead' : 'Create an account'}</button></p>
    </form>
  </main>`;
}

// A signed-in person who opens an invite link joins its organisation with
// the invited role by accepting here (POST /api/auth/invite), which signs
// them into that organisation.
function JoinInvite({ me, onJoined }) {
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);
  async function accept() {
    setBusy(true);
    setError('');
    try {
      const joined = await api('/api/auth/invite', { method: 'POST', body: { invite: inviteToken() } });
      location.hash = '#/';
      onJoined(joined);
    } catch (err) {
      setError(err.message);
    } finally {
      setBusy(false);
    }
  }
  return html`<main class="auth">
    <section aria-labelledby="join-h">
      <h2 id="join-h">You are invited</h2>
      <p>Signed in as ${me.user.email}. Accept to join the organization that invited you, with the role it gave you.</p>
      ${error && html`<p class="error" role="alert">${error}</p>`}
      <button type="button" disabled=${busy} onClick=${accept}>Accept the invite</button>
      <p><a href="#/">Not now</a></p>
    </section>
  </main>`;
}

function route() {
  const hash = location.hash.replace(/^#\/?/, '');
  return hash.split('?')[0] || 'chat';
}

function App() {
  const [me, setMe] = useState(undefined);
  const [page, setPage] = useState(route());
  const refreshMe = () => api('/api/me').then(setMe).catch((err) => {
    if (err.status === 401 || err.status === 403) setMe(null);
    else setMe({ error: err.message });
  });
  useEffect(() => {
    refreshMe();
    // A page change also refreshes the person (their role or plan may have
    // changed on the admin page).
    const onHash = () => { setPage(route()); refreshMe(); };
    addEventListener('hashchange', onHash);
    return () => removeEventListener('hashchange', onHash);
  }, []);
  if (me === undefined) return html`<p class="loading">Loading…</p>`;
  if (me === null) return html`<${Auth} onSignedIn=${setMe} />`;
  if (me.error) return html`<p class="error" role="alert">${me.error}</p>`;
  async function signOut() {
    try { await api('/api/auth/logout', { method: 'POST', body: {} }); } catch (_) { /* gone anyway */ }
    setMe(null);
    location.hash = '#/';
  }
  const nav = html`<nav class="top" aria-label="Pages">
    <a href="#/" aria-current=${page === 'chat' ? 'page' : undefined}>Chat</a>
    <a href="#/keys" aria-current=${page === 'keys' ? 'page' : undefined}>API keys</a>
    <a href="#/usage" aria-current=${page === 'usage' ? 'page' : undefined}>Usage</a>
    <a href="#/invoice" aria-current=${page === 'invoice' ? 'page' : undefined}>Invoice</a>
    <a href="#/admin" aria-current=${page === 'admin' ? 'page' : undefined}>Admin</a>
    <span class="who">${me.user.name} · ${me.role}</span>
    <button type="button" onClick=${signOut}>Sign out</button>
  </nav>`;
  if (page === 'signup' && inviteToken()) return html`${nav}<${JoinInvite} me=${me} onJoined=${setMe} />`;
  if (page === 'keys') return html`${nav}<${Keys} me=${me} />`;
  if (page === 'usage') return html`${nav}<${Usage} me=${me} />`;
  if (page === 'invoice') return html`${nav}<${Invoice} me=${me} />`;
  if (page === 'admin') return html`${nav}<${Admin} me=${me} />`;
  return html`${nav}<${Chat} me=${me} refreshMe=${refreshMe} />`;
}

render(html`<${App} />`, document.getElementById('app'));
