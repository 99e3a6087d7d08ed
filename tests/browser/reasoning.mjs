// The web app with a thinking model: the reasoning streams into a collapsed
// "Reasoning" section above the answer, and stays there once the answer is
// done. Run by crates/cli/tests/reasoning.rs with PARLANCE_BIN,
// PARLANCE_MODEL, PARLANCE_CHROMIUM and PARLANCE_TEMPLATE (a chat template
// whose prompt ends inside `<think>`, so the default SmolLM2 model's whole
// short answer is reasoning). Prints "ok - <name>"; a failure exits 1.

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';

const { PARLANCE_BIN: BIN, PARLANCE_MODEL: MODEL, PARLANCE_TEMPLATE: TEMPLATE } = process.env;
const CHROMIUM = process.env.PARLANCE_CHROMIUM || '/usr/bin/chromium';
if (!BIN || !MODEL || !TEMPLATE) {
  console.error('set PARLANCE_BIN, PARLANCE_MODEL and PARLANCE_TEMPLATE');
  process.exit(2);
}

const dataDir = mkdtempSync(join(tmpdir(), 'parlance-reasoning-'));
const server = spawn(BIN, ['serve', '--port', '0', '--model', MODEL, '--threads', '2', '--data-dir', dataDir,
  '--chat-template', TEMPLATE], { stdio: ['ignore', 'ignore', 'pipe'] });
let stderr = '';
server.stderr.on('data', (d) => { stderr += d; });
let browser;
let code = 0;
try {
  const port = await new Promise((resolve, reject) => {
    server.stderr.on('data', () => {
      const m = /listening on http:\/\/[^\s:/]+:(\d+)/.exec(stderr);
      if (m) resolve(m[1]);
    });
    server.on('exit', () => reject(new Error(`parlance serve exited: ${stderr}`)));
  });
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
  const page = await (await browser.newContext({ viewport: { width: 1000, height: 700 } })).newPage();
  const errors = [];
  page.on('pageerror', (err) => errors.push(String(err)));
  await page.goto(`http://127.0.0.1:${port}`);
  await page.getByLabel('Name').fill('Ada');
  await page.getByLabel('Email').fill('ada@example.com');
  await page.getByLabel('Password').fill('analytical engine');
  await page.getByRole('button', { name: 'Sign up' }).click();
  await page.getByRole('button', { name: 'New chat' }).waitFor();
  await page.getByRole('button', { name: 'Settings' }).click();
  await page.getByLabel('Max tokens').fill('10');
  await page.getByRole('textbox', { name: 'Message', exact: true }).fill('What is 2+2?');
  await page.getByRole('button', { name: 'Send' }).click();
  // The finished answer (not the streaming one, which says "Thinking…").
  const details = page.locator('article[aria-label="Assistant message"]:not([aria-busy]) details.reasoning');
  await details.first().waitFor({ timeout: 120_000 });
  assert.equal(await details.count(), 1);
  assert.equal(await details.evaluate((e) => e.open), false, 'collapsed');
  assert.equal(await details.locator('summary').innerText(), 'Reasoning');
  const text = await details.locator('.plain').textContent();
  assert.ok(text.trim().length > 0, 'the reasoning text is inside');
  assert.ok(!(await details.isVisible()) || !(await details.locator('.plain').isVisible()), 'its text is hidden');
  await details.locator('summary').click();
  assert.ok(await details.locator('.plain').isVisible(), 'opening shows it');
  assert.deepEqual(errors, []);
  console.log('ok - reasoning shown collapsed above the answer');
} catch (err) {
  console.log(`not ok - reasoning shown collapsed above the answer\n${err && err.stack ? err.stack : err}`);
  code = 1;
} finally {
  if (browser) await browser.close();
  server.kill();
  rmSync(dataDir, { recursive: true, force: true });
}
process.exit(code);
