// The second half of the browser tests (run.mjs calls `moreScenarios` after
// its own): the admin page (a new person waiting for approval, approved
// there — and another rejected — then signing in; a role change the member then sees, a plan
// assignment changing the quota shown, a price change in the table, the
// backends), KaTeX typesetting with hostile math kept inert, a text-file
// attachment reaching the model's context, a key with limits and its
// rate-limit headers, usage by key with CSV export, the invoice total
// against the API's, and the accessibility check (axe-core) of the chat,
// usage and admin pages in light and dark. Writes admin.png and
// invoice.png into the screenshots folder.

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import assert from 'node:assert/strict';

const require = createRequire(import.meta.url);
const AXE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

/**
 * Runs axe-core on the page as it is and answers the serious and critical
 * violations (WCAG 2 A and AA rules, colour contrast included). The script
 * is evaluated through the DevTools protocol, so the page's CSP stays as
 * served.
 */
export async function axeViolations(page) {
  if (!(await page.evaluate(() => typeof window.axe === 'object'))) await page.evaluate(AXE);
  const result = await page.evaluate(async () => window.axe.run(document, {
    runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] },
    resultTypes: ['violations'],
  }));
  return result.violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${v.id} (${v.impact}): ${v.help} — ${v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join(' | ')}`);
}

export async function moreScenarios(t) {
  const { page, browser, BASE, SHOTS, scenario, until, composer } = t;
  const json = (path) => page.evaluate(async (p) => (await fetch(p)).json(), path);

  await scenario('KaTeX is loaded only for math and renders it; hostile math stays inert', async () => {
    const fresh = await page.context().newPage();
    await fresh.goto(`${BASE}/#/usage`);
    await fresh.getByRole('heading', { name: 'Usage' }).waitFor();
    const loaded = await fresh.evaluate(() => performance.getEntriesByType('resource').map((e) => e.name));
    assert.ok(!loaded.some((n) => n.includes('katex')), `KaTeX loaded without math: ${loaded.join(' ')}`);
    await fresh.close();
    const result = await page.evaluate(async () => {
      const { renderInto } = await import('/assets/render.js');
      window.__pwned = 0;
      const host = document.createElement('div');
      document.body.append(host);
      renderInto(host, [
        'Euler: $e^{i\\pi}+1=0$ and costs $5 and $6.',
        '$$\\href{javascript:window.__pwned=1}{click}$$',
        '\\(\\url{javascript:window.__pwned=2}\\) \\[\\htmlId{x}{y}\\]',
        '$<img src=x onerror="window.__pwned=3">$',
        '`$not math$` and <img src=z onerror="window.__pwned=4">',
      ].join('\n\n'));
      const end = Date.now() + 30000;
      while (!host.querySelector('.katex math') && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
      await new Promise((r) => setTimeout(r, 200));
      const out = {
        pwned: window.__pwned,
        html: host.innerHTML,
        katex: host.querySelectorAll('.katex math').length,
        euler: host.querySelector('.katex annotation') && host.querySelector('.katex annotation').textContent,
        jsLinks: [...host.querySelectorAll('[href],[src]')]
          .filter((e) => /javascript:/i.test(e.getAttribute('href') || e.getAttribute('src') || '')).length,
        handlers: [...host.querySelectorAll('*')].filter((e) => [...e.attributes].some((a) => /^on/i.test(a.name))).length,
        code: [...host.querySelectorAll('code')].map((c) => c.textContent),
        text: host.textContent,
      };
      host.remove();
      return out;
    });
    assert.ok(result.katex >= 2, result.html);
    assert.equal(result.euler, 'e^{i\\pi}+1=0', result.html);
    assert.equal(result.pwned, 0, result.html);
    assert.equal(result.jsLinks, 0, result.html);
    assert.equal(result.handlers, 0, result.html);
    assert.ok(result.code.includes('$not math$'), 'math inside code stays code');
    assert.ok(result.text.includes('costs $5 and $6'), 'prices are not math');
  });

  // A second person in their own browser context: they wait for approval
  // (PARLANCE_SIGNUP=approval, the default), then are a member.
  const bobContext = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const bob = await bobContext.newPage();
  await scenario('a new person waits for approval until an admin approves them on the admin page', async () => {
    await bob.goto(BASE);
    await bob.getByLabel('Name').fill('Bob');
    await bob.getByLabel('Email').fill('bob@example.com');
    await bob.getByLabel('Password').fill('difference engine');
    await bob.getByRole('button', { name: 'Sign up' }).click();
    await bob.getByRole('status').filter({ hasText: /must approve your account/ }).waitFor();
    assert.equal((await bobContext.cookies()).length, 0, 'no session while pending');
    await bob.getByLabel('Password').fill('difference engine');
    await bob.getByRole('button', { name: 'Sign in' }).click();
    await bob.getByRole('alert').filter({ hasText: /waiting for approval/ }).waitFor();
    // Eve signs up too, and is rejected.
    const eve = await bob.evaluate(async () => (await fetch('/api/auth/signup', {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ email: 'eve@example.com', name: 'Eve', password: 'not approved' }),
    })).status);
    assert.equal(eve, 202);
    await page.goto(`${BASE}/#/admin`);
    const pending = page.getByRole('table', { name: 'Pending sign-ups' });
    await pending.getByRole('row').filter({ hasText: 'bob@example.com' }).waitFor();
    await pending.getByRole('row').filter({ hasText: 'eve@example.com' }).waitFor();
    await page.getByRole('button', { name: 'Reject eve@example.com' }).click();
    await page.getByRole('status').filter({ hasText: 'eve@example.com was rejected.' }).waitFor();
    await page.getByRole('button', { name: 'Approve bob@example.com' }).click();
    await page.getByRole('status').filter({ hasText: 'bob@example.com was approved' }).waitFor();
    await page.getByLabel('Role of bob@example.com').waitFor();
    await pending.getByText('No one is waiting.').waitFor();
    const audit = await page.evaluate(async () => (await fetch('/v1/organization/audit_logs?format=csv')).text());
    assert.ok(audit.includes('member.approved') && audit.includes('member.rejected'), audit.slice(-2000));
    await bob.getByRole('button', { name: 'Sign in' }).click();
    await bob.getByRole('button', { name: 'New chat' }).waitFor();
  });

  await scenario('a member gets "not allowed" on the admin page and 403 from its API', async () => {
    await bob.goto(`${BASE}/#/admin`);
    await bob.getByRole('alert').filter({ hasText: /Only owners and admins/ }).waitFor();
    const status = await bob.evaluate(async () => (await fetch('/api/admin/members')).status);
    assert.equal(status, 403);
  });

  await scenario('an admin changes a member\u2019s role and the member sees the effect', async () => {
    await page.goto(`${BASE}/#/admin`);
    const role = page.getByLabel('Role of bob@example.com');
    await role.waitFor();
    assert.equal(await role.inputValue(), 'member');
    await role.selectOption('admin');
    await page.getByRole('status').filter({ hasText: 'bob@example.com: role is now admin.' }).waitFor();
    await bob.reload();
    await bob.getByRole('table', { name: 'Members' }).waitFor();
    assert.equal(await bob.evaluate(async () => (await fetch('/api/admin/members')).status), 200);
    await page.getByLabel('Role of bob@example.com').selectOption('member');
    await page.getByRole('status').filter({ hasText: 'role is now member.' }).waitFor();
  });

  await scenario('a plan assignment changes the quota shown', async () => {
    await page.getByLabel('Plan of ada@example.com').selectOption('plus');
    await page.getByRole('status').filter({ hasText: 'plan is now plus.' }).waitFor();
    await page.goto(`${BASE}/#/`);
    await page.getByLabel('Plan and quota').getByText(/^Plan: Plus · [\d,]+ tokens left this month$/).waitFor();
  });

  await scenario('a price change shows in the price table', async () => {
    await page.goto(`${BASE}/#/admin`);
    await page.getByLabel('Model (* for the default)').fill('browser-test-model');
    await page.getByLabel('Input, USD per 1M tokens').fill('0.5');
    await page.getByLabel('Output, USD per 1M tokens').fill('1.25');
    await page.getByRole('button', { name: 'Set price' }).click();
    const row = page.getByRole('table', { name: 'Price table' }).getByRole('row').filter({ hasText: 'browser-test-model' });
    await row.waitFor();
    const text = await row.innerText();
    assert.match(text, /0\.50*\b/);
    assert.match(text, /1\.250*\b/);
    const backends = page.getByRole('table', { name: 'Backends' }).getByRole('row');
    await until('a backend row', async () => (await backends.count()) >= 2);
    await page.screenshot({ path: join(SHOTS, 'admin.png'), fullPage: true });
  });

  await scenario('an attachment\u2019s text reaches the model\u2019s context', async () => {
    await page.goto(`${BASE}/#/`);
    await page.getByRole('button', { name: 'New chat' }).click();
    const files = page.getByLabel('Attach text files');
    await files.setInputFiles({ name: 'big.txt', mimeType: 'text/plain', buffer: Buffer.alloc(210 * 1024, 'a') });
    await page.getByRole('alert').filter({ hasText: 'big.txt is over 200 KB' }).waitFor();
    await files.setInputFiles({ name: 'notes.md', mimeType: 'text/markdown', buffer: Buffer.from('The code word is PERIWINKLE-42.\n') });
    await page.getByRole('list', { name: 'Attachments' }).getByText('notes.md').waitFor();
    if (!(await page.getByLabel('Max tokens').count())) await page.getByRole('button', { name: 'Settings' }).click();
    await page.getByLabel('Max tokens').fill('8');
    const sent = page.waitForRequest((r) => r.url().endsWith('/v1/chat/completions') && r.method() === 'POST');
    await composer().fill('What is the code word?');
    await composer().press('Enter');
    const body = JSON.parse((await sent).postData());
    const user = body.messages.filter((m) => m.role === 'user').at(-1);
    assert.ok(user.content.includes('PERIWINKLE-42'), user.content);
    assert.ok(user.content.endsWith('What is the code word?'), user.content);
    await page.getByRole('button', { name: 'Send' }).waitFor({ timeout: 120_000 });
    const list = await json('/api/conversations');
    const conv = await json(`/api/conversations/${list.data[0].id}`);
    assert.ok(conv.messages[0].content.includes('<attachment name="notes.md">'), conv.messages[0].content);
    await page.locator('article[aria-label="Your message"]').getByText('notes.md').waitFor();
  });

  await scenario('a key created with limits answers with its rate-limit headers', async () => {
    await page.goto(`${BASE}/#/keys`);
    await page.getByLabel('Key name').fill('limited');
    const nextYear = `${new Date().getUTCFullYear() + 1}-06-30`;
    await page.getByLabel('Expires').fill(nextYear);
    await page.getByLabel('Requests per minute limit').fill('7');
    await page.getByLabel('Tokens per minute limit').fill('5000');
    await page.getByRole('button', { name: 'Create key' }).click();
    const secret = (await page.getByLabel('New secret key').innerText()).trim();
    const row = page.getByRole('row').filter({ has: page.getByRole('cell', { name: 'limited', exact: true }) });
    await row.waitFor();
    assert.match(await row.innerText(), /7 rpm · 5,000 tpm[\s\S]*2\d{3}-06-30/);
    const model = (await json('/v1/models')).data[0].id;
    const res = await fetch(`${BASE}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 2 }),
    });
    assert.equal(res.status, 200, await res.clone().text());
    assert.equal(res.headers.get('x-ratelimit-limit-requests'), '7');
    assert.equal(res.headers.get('x-ratelimit-limit-tokens'), '5000');
    assert.ok(Number(res.headers.get('x-ratelimit-remaining-requests')) < 7);
  });

  await scenario('usage by key and by project, with CSV export', async () => {
    await page.goto(`${BASE}/#/usage`);
    await page.getByLabel('Group by').selectOption('key');
    const byKey = page.getByRole('table', { name: 'Usage by key' });
    await byKey.getByText(/^sdk test/).first().waitFor();
    const download = page.waitForEvent('download');
    await page.getByRole('button', { name: 'Export CSV' }).click();
    const csv = readFileSync(await (await download).path(), 'utf8');
    assert.match(csv.split('\n')[0], /^date,key,requests,input_tokens,output_tokens,cost_usd$/);
    assert.match(csv, /sdk test/);
    await page.getByLabel('Group by').selectOption('project');
    await page.getByRole('table', { name: 'Usage by project' }).getByRole('row').nth(1).waitFor();
  });

  await scenario('the invoice page total equals the API\u2019s', async () => {
    await page.goto(`${BASE}/#/invoice`);
    const total = page.getByLabel('Invoice total');
    await total.waitFor();
    const month = new Date().toISOString().slice(0, 7);
    const invoice = await json(`/v1/organization/invoices/${month}`);
    assert.equal((await total.innerText()).trim(), invoice.total);
    assert.ok(invoice.lines.length >= 1);
    assert.equal(await page.getByRole('table', { name: 'Invoice lines' }).getByRole('row').count(), invoice.lines.length + 2);
    await page.screenshot({ path: join(SHOTS, 'invoice.png') });
  });

  await scenario('accessibility: no serious or critical axe violations (light and dark)', async () => {
    const found = [];
    for (const scheme of ['light', 'dark']) {
      await page.emulateMedia({ colorScheme: scheme });
      for (const [hash, ready] of [['#/', 'Message'], ['#/usage', 'Group by'], ['#/admin', 'Set price']]) {
        await page.goto(`${BASE}/${hash}`);
        await page.reload();
        if (ready === 'Set price') await page.getByRole('button', { name: ready }).waitFor();
        else await page.getByLabel(ready, { exact: true }).first().waitFor();
        if (hash === '#/admin') await page.getByLabel('Role of bob@example.com').waitFor();
        if (hash === '#/usage') await page.getByLabel('Totals').waitFor();
        for (const v of await axeViolations(page)) found.push(`${scheme} ${hash}: ${v}`);
      }
    }
    await page.emulateMedia({ colorScheme: 'light' });
    assert.deepEqual(found, []);
    // The check itself can fail: a nameless button and faint text are found.
    await page.evaluate(() => {
      const probe = document.createElement('div');
      probe.id = 'axe-probe';
      probe.innerHTML = '<button type="button"></button><p class="probe-faint">faint</p>';
      document.body.append(probe);
      probe.querySelector('p').style.color = '#eeeeee';
    });
    const probed = await axeViolations(page);
    await page.evaluate(() => document.getElementById('axe-probe').remove());
    assert.ok(probed.some((v) => v.startsWith('button-name')), probed.join('\n'));
    assert.ok(probed.some((v) => v.startsWith('color-contrast')), probed.join('\n'));
  });
  await bobContext.close();
}
