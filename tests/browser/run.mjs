// Browser tests of the Parlance web app in real headless Chromium (Debian's
// /usr/bin/chromium, driven by playwright-core; no browser is downloaded),
// against the real `parlance serve` and the real default model.
//
// Run by crates/cli/tests/browser.rs with:
//   PARLANCE_BIN     the parlance binary
//   PARLANCE_MODEL   the GGUF to serve
//   PARLANCE_PYTHON  a python with the `openai` SDK (target/e2e-venv/bin/python)
//   PARLANCE_CHROMIUM  the browser (default /usr/bin/chromium)
//   PARLANCE_SCREENSHOTS  where screenshots go (default docs/screenshots)
// Each scenario prints "ok - <name>"; the first failure exits 1. The admin,
// KaTeX, attachment, key-limit, invoice and accessibility scenarios are in
// more.mjs; the Admin page's invites in invites.mjs.

import { spawn, execFileSync } from 'node:child_process';
import { guardrailScenarios } from './guardrails.mjs';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';
import { moreScenarios } from './more.mjs';
import { inviteScenarios } from './invites.mjs';

const BIN = process.env.PARLANCE_BIN;
const MODEL = process.env.PARLANCE_MODEL;
const PYTHON = process.env.PARLANCE_PYTHON || '';
const CHROMIUM = process.env.PARLANCE_CHROMIUM || '/usr/bin/chromium';
const SHOTS = resolve(process.env.PARLANCE_SCREENSHOTS || 'docs/screenshots');
const DEADLINE_MS = 120_000;

if (!BIN || !MODEL) {
  console.error('set PARLANCE_BIN and PARLANCE_MODEL');
  process.exit(2);
}

/** Polls `check` until it returns a truthy value, or fails after `ms`. */
async function until(what, check, ms = DEADLINE_MS) {
  const end = Date.now() + ms;
  let last;
  for (;;) {
    try {
      last = await check();
      if (last) return last;
    } catch (err) {
      last = err;
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what} (last: ${last})`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

// The server, on a free port with its own data directory.
const dataDir = mkdtempSync(join(tmpdir(), 'parlance-browser-'));
const server = spawn(BIN, ['serve', '--port', '0', '--model', MODEL, '--threads', '2', '--data-dir', dataDir],
  { stdio: ['ignore', 'ignore', 'pipe'] });
let stderr = '';
server.stderr.on('data', (d) => { stderr += d; });
const port = await until('the server to listen', () => {
  if (server.exitCode !== null) throw new Error(`parlance serve exited: ${stderr}`);
  const m = /listening on http:\/\/[^\s:/]+:(\d+)/.exec(stderr);
  return m && Number(m[1]);
}, 300_000);
const BASE = `http://127.0.0.1:${port}`;
const DB = join(dataDir, 'parlance.db');

/** Rows of the usage ledger, newest first (read from the SQLite file). */
function ledger() {
  const py = 'import json,sqlite3,sys;c=sqlite3.connect(sys.argv[1]);'
    + 'print(json.dumps([dict(zip(["request_id","status","completion_tokens","api_key_id"],r)) for r in '
    + 'c.execute("select request_id,status,completion_tokens,api_key_id from usage_ledger order by id desc")]))';
  return JSON.parse(execFileSync('python3', ['-c', py, DB]).toString());
}

const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: BASE });
const page = await context.newPage();
const pageErrors = [];
let current = '';
page.on('pageerror', (err) => pageErrors.push(`${current}: ${err}`));
page.on('console', (msg) => { if (msg.type() === 'error') pageErrors.push(`${current}: ${msg.text()}`); });
page.on('dialog', (dialog) => dialog.accept(dialog.type() === 'prompt' ? 'Renamed chat' : undefined));

let failed = false;
async function scenario(name, body) {
  if (failed) return;
  current = name;
  try {
    await body();
    console.log(`ok - ${name}`);
  } catch (err) {
    failed = true;
    console.log(`not ok - ${name}\n${err && err.stack ? err.stack : err}`);
    try { await page.screenshot({ path: join(tmpdir(), 'parlance-browser-failure.png') }); } catch (_) { /* */ }
  }
}

const composer = () => page.getByRole('textbox', { name: 'Message', exact: true });
const assistant = () => page.locator('article[aria-label="Assistant message"]');
const streamingText = async () => {
  const live = page.locator('article[aria-busy="true"]');
  return (await live.count()) ? live.innerText() : null;
};
async function setMaxTokens(n) {
  if (!(await page.getByLabel('Max tokens').count())) await page.getByRole('button', { name: 'Settings' }).click();
  await page.getByLabel('Max tokens').fill(String(n));
  await page.getByLabel('Temperature').fill('0.8');
}
async function waitIdle() {
  await page.getByRole('button', { name: 'Send' }).waitFor({ timeout: DEADLINE_MS });
}
async function conversationJson() {
  return page.evaluate(async () => {
    const list = await (await fetch('/api/conversations')).json();
    return (await fetch(`/api/conversations/${list.data[0].id}`)).json();
  });
}

mkdirSync(SHOTS, { recursive: true });

await scenario('sign up', async () => {
  await page.goto(BASE);
  await page.getByLabel('Name').fill('Ada');
  await page.getByLabel('Email').fill('ada@example.com');
  await page.getByLabel('Password').fill('analytical engine');
  await page.getByRole('button', { name: 'Sign up' }).click();
  await page.getByRole('button', { name: 'New chat' }).waitFor();
  assert.match(await page.getByLabel('Plan and quota').innerText(), /Plan: .*left this month|unlimited/);
  const cookies = await context.cookies();
  const session = cookies.find((c) => c.name === 'parlance_session');
  assert.ok(session && session.httpOnly && session.sameSite === 'Strict', JSON.stringify(cookies));
});

await scenario('hostile model output renders inert', async () => {
  const result = await page.evaluate(async () => {
    const { renderInto } = await import('/assets/render.js');
    window.__pwned = 0;
    const host = document.createElement('div');
    document.body.append(host);
    renderInto(host, [
      'Hi <img src=x onerror="window.__pwned=1"> there',
      '[click](javascript:window.__pwned=2) and [ok](https://example.com)',
      '<a href="javascript:window.__pwned=3">raw</a>',
      '<script>window.__pwned=4</script>',
      '```html\n<img src=y onerror="window.__pwned=5"><script>window.__pwned=6</script>\n```',
      '<iframe src="javascript:window.__pwned=7"></iframe>',
      '![pic](javascript:window.__pwned=8)',
    ].join('\n\n'));
    await new Promise((r) => setTimeout(r, 300));
    const out = {
      pwned: window.__pwned,
      html: host.innerHTML,
      code: host.querySelector('pre code') && host.querySelector('pre code').textContent,
      imgs: host.querySelectorAll('img[onerror]').length,
      jsLinks: [...host.querySelectorAll('[href],[src]')]
        .filter((e) => /^\s*javascript:/i.test(e.getAttribute('href') || e.getAttribute('src') || '')).length,
      scripts: host.querySelectorAll('script,iframe').length,
      copy: host.querySelectorAll('button[aria-label="Copy code"]').length,
      safeLink: host.querySelector('a[href="https://example.com"]') !== null,
    };
    host.remove();
    return out;
  });
  assert.equal(result.pwned, 0, result.html);
  assert.equal(result.imgs, 0, result.html);
  assert.equal(result.jsLinks, 0, result.html);
  assert.equal(result.scripts, 0, result.html);
  assert.ok(result.code.includes('<script>window.__pwned=6</script>'), 'HTML in code blocks is text');
  assert.equal(result.copy, 1);
  assert.ok(result.safeLink, result.html);
  assert.ok(result.html.includes('&lt;img'), 'raw HTML shows as text');
});

await scenario('chat streams text progressively', async () => {
  await setMaxTokens(120);
  await composer().fill('Write a long story about a dragon who learns to paint.');
  await composer().press('Enter');
  const seen = [];
  await until('the answer to grow across two observations', async () => {
    const text = await streamingText();
    if (text && text !== '…' && (seen.length === 0 || text.length > seen[seen.length - 1])) seen.push(text.length);
    return seen.length >= 3;
  });
  await waitIdle();
  assert.equal(await assistant().count(), 1);
  assert.ok((await assistant().first().innerText()).length > seen[0]);
});

await scenario('stop mid-stream is cancelled and billed for what was generated', async () => {
  await setMaxTokens(400);
  const before = ledger().length;
  await composer().fill('Now tell a much longer story, with many chapters.');
  await page.getByRole('button', { name: 'Send' }).click();
  await until('the first tokens', async () => {
    const text = await streamingText();
    return text && text !== '…' && text.length > 5;
  });
  await page.getByRole('button', { name: 'Stop' }).click();
  await waitIdle();
  await page.getByText('Stopped.').waitFor();
  const row = await until('the ledger row of the stopped request', () => {
    const rows = ledger();
    return rows.length > before && rows[0];
  });
  assert.equal(row.status, 'cancelled', JSON.stringify(row));
  assert.ok(row.completion_tokens > 0 && row.completion_tokens < 400, JSON.stringify(row));
  assert.ok(row.api_key_id.startsWith('session:'), JSON.stringify(row));
  // The partial answer was kept with its request id.
  const conv = await conversationJson();
  assert.equal(conv.messages[conv.messages.length - 1].request_id, row.request_id);
});

await scenario('regenerate replaces the last answer', async () => {
  await setMaxTokens(40);
  const before = await conversationJson();
  const old = before.messages[before.messages.length - 1];
  assert.equal(old.role, 'assistant');
  await page.getByRole('button', { name: 'Regenerate' }).click();
  await until('streaming to start', async () => (await streamingText()) !== null || (await conversationJson()).messages.at(-1).id !== old.id);
  await waitIdle();
  const after = await conversationJson();
  assert.equal(after.messages.length, before.messages.length);
  assert.notEqual(after.messages.at(-1).id, old.id);
  assert.equal(after.messages.at(-1).role, 'assistant');
});

await scenario('edit and resend', async () => {
  const edits = page.getByRole('button', { name: 'Edit message' });
  await edits.last().click();
  await page.getByRole('textbox', { name: 'Edit message' }).fill('Say hello in French.');
  await page.getByRole('button', { name: 'Save and send' }).click();
  await waitIdle();
  await until('the edited conversation', async () => {
    const conv = await conversationJson();
    return conv.messages.at(-2).content === 'Say hello in French.' && conv.messages.at(-1).role === 'assistant';
  });
  const conv = await conversationJson();
  assert.equal(conv.messages.filter((m) => m.content === 'Now tell a much longer story, with many chapters.').length, 0);
  await page.getByText('Say hello in French.').waitFor();
});

await scenario('reload and find the conversation', async () => {
  await page.reload();
  const title = page.getByRole('button', { name: /^Write a long story about a dragon/ });
  await title.waitFor();
  await page.getByLabel('Search conversations').fill('French');
  await title.waitFor();
  await title.click();
  await page.getByText('Say hello in French.').waitFor();
  assert.ok(await assistant().count() >= 2);
  await page.getByLabel('Search conversations').fill('');
  // Rename (the dialog answers 'Renamed chat').
  await page.getByRole('button', { name: /^Rename Write a long story/ }).click();
  await page.getByRole('button', { name: 'Renamed chat', exact: true }).waitFor();
  assert.equal((await conversationJson()).title, 'Renamed chat');
});

await scenario('screenshots of the chat (light/dark, desktop/phone)', async () => {
  for (const [name, viewport] of [['desktop', { width: 1280, height: 800 }], ['phone', { width: 390, height: 844 }]]) {
    await page.setViewportSize(viewport);
    for (const scheme of ['light', 'dark']) {
      await page.emulateMedia({ colorScheme: scheme });
      await composer().waitFor();
      await page.screenshot({ path: join(SHOTS, `chat-${name}-${scheme}.png`) });
    }
  }
  await page.emulateMedia({ colorScheme: 'light' });
  await page.setViewportSize({ width: 1280, height: 800 });
  // At phone width the conversation list opens from the menu.
  await page.setViewportSize({ width: 390, height: 844 });
  assert.equal(await page.getByRole('button', { name: 'New chat' }).isVisible(), false);
  await page.getByRole('button', { name: 'Show conversations' }).click();
  assert.equal(await page.getByRole('button', { name: 'New chat' }).isVisible(), true);
  await page.setViewportSize({ width: 1280, height: 800 });
});

await scenario('an API key made in the page works with the openai SDK and shows on the usage page', async () => {
  const totals = page.getByLabel('Totals');
  const requestsOf = async () => Number((/^(\d+) requests/.exec(await totals.innerText()) || [])[1]);
  await page.goto(`${BASE}/#/keys`);
  await page.getByLabel('Key name').fill('sdk test');
  await page.getByRole('button', { name: 'Create key' }).click();
  const secret = (await page.getByLabel('New secret key').innerText()).trim();
  assert.match(secret, /^sk-/);
  await page.getByRole('cell', { name: 'sdk test', exact: true }).waitFor();
  const model = await page.evaluate(async () => (await (await fetch('/v1/models')).json()).data[0].id);
  let used;
  if (PYTHON) {
    const py = 'import openai,sys;c=openai.OpenAI(base_url=sys.argv[1],api_key=sys.argv[2]);'
      + 'r=c.chat.completions.create(model=sys.argv[3],messages=[{"role":"user","content":"Hi"}],max_tokens=5);'
      + 'print(r.usage.total_tokens)';
    used = Number(execFileSync(PYTHON, ['-c', py, `${BASE}/v1`, secret, model]).toString().trim());
  } else {
    console.log('# no PARLANCE_PYTHON with the openai SDK: calling the API with fetch instead');
    const res = await fetch(`${BASE}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 5 }),
    });
    assert.equal(res.status, 200);
    used = (await res.json()).usage.total_tokens;
  }
  assert.ok(used > 0);
  const rows = await until('the ledger row of the SDK request', () => {
    const r = ledger();
    return r.length && !r[0].api_key_id.startsWith('session:') && r[0];
  });
  assert.equal(rows.status, 'ok');
  await page.goto(`${BASE}/#/usage`);
  await until('the usage page to count the SDK request', async () => {
    await page.getByRole('button', { name: 'Refresh' }).click();
    return (await requestsOf()) === ledger().length;
  });
  await page.getByRole('table', { name: 'Usage by model' }).waitFor();
  await page.screenshot({ path: join(SHOTS, 'usage.png') });
  await page.goto(`${BASE}/#/keys`);
  await page.getByRole('cell', { name: 'sdk test', exact: true }).waitFor();
  await page.screenshot({ path: join(SHOTS, 'keys.png') });
});

await scenario('a tool call shows readably', async () => {
  await page.goto(`${BASE}/#/`);
  await page.reload();
  await composer().waitFor();
  if (!(await page.getByLabel('Tools (JSON)').count())) await page.getByRole('button', { name: 'Settings' }).click();
  await page.getByLabel('Tools (JSON)').fill(JSON.stringify([{ type: 'function', function: {
    name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string', maxLength: 30 } },
      required: ['city'], additionalProperties: false } } }]));
  await page.getByLabel('Tool choice').selectOption('required');
  await page.getByLabel('Max tokens').fill('120');
  await page.getByRole('button', { name: 'New chat' }).click();
  await composer().fill('What is the weather in Paris?');
  await composer().press('Enter');
  const done = page.locator('article[aria-label="Assistant message"]:not([aria-busy="true"])');
  await until('the finished answer with its tool call', async () => (await done.count()) > 0
    && /get_weather/.test(await done.last().innerText()));
  await waitIdle();
  const text = await done.last().innerText();
  assert.match(text, /Tool call/);
  assert.match(text, /get_weather/);
  assert.match(text, /"city"/);
  assert.ok(!text.includes('<tool_call>'), text);
  await page.screenshot({ path: join(SHOTS, 'chat-tool-call.png') });
  await page.getByLabel('Tools (JSON)').fill('');
});

await scenario('at the quota limit the app says what to do', async () => {
  const cli = (...args) => execFileSync(BIN, ['plan', ...args, '--data-dir', dataDir], { stdio: 'pipe' }).toString();
  cli('define', 'tiny', '--name', 'Tiny', '--tokens', '1');
  cli('assign', '--user', 'ada@example.com', 'tiny');
  await page.goto(`${BASE}/#/`);
  await page.reload();
  await page.getByLabel('Plan and quota').getByText('Plan: Tiny · 0 tokens left this month').waitFor();
  await page.getByRole('button', { name: 'New chat' }).click();
  await composer().fill('One more question?');
  await composer().press('Enter');
  // The server's refusal, not only the banner shown since the page loaded.
  const alert = page.getByRole('alert').filter({ hasText: /quota of your plan \(tiny\)/i });
  await alert.waitFor();
  const text = await alert.innerText();
  assert.match(text, /quota/i);
  assert.match(text, /renews/i);
  assert.match(text, /bigger plan/i);
  await page.screenshot({ path: join(SHOTS, 'chat-quota-limit.png') });
});

await guardrailScenarios({ page, BASE, DB, scenario, until });

await scenario('delete a conversation', async () => {
  await page.getByRole('button', { name: 'Renamed chat', exact: true }).waitFor();
  await page.getByRole('button', { name: 'Delete Renamed chat' }).click();
  await until('the conversation to be gone', async () => (await page.getByRole('button', { name: 'Renamed chat', exact: true }).count()) === 0
    && !(await page.evaluate(async () => (await (await fetch('/api/conversations')).json()).data))
      .some((c) => c.title === 'Renamed chat'));
});

await moreScenarios({ page, browser, BASE, SHOTS, scenario, until, composer });
await inviteScenarios({ page, browser, BASE, scenario });

await scenario('no script errors on the page', async () => {
  // favicon 404s are not script errors.
  const real = pageErrors.filter((e) => !/favicon|Failed to load resource/.test(e));
  assert.deepEqual(real, []);
});

await browser.close();
server.kill('SIGTERM');
await until('the server to stop', () => server.exitCode !== null || server.signalCode !== null, 30_000)
  .catch(() => server.kill('SIGKILL'));
rmSync(dataDir, { recursive: true, force: true });
if (failed) {
  console.log(`server stderr (tail):\n${stderr.slice(-3000)}`);
  process.exit(1);
}
console.log('all browser scenarios passed');
