// The Admin page's guardrails section in the browser (run.mjs calls
// `guardrailScenarios`): the owner turns input moderation on for the web
// chat's project, the setting survives a reload and is what the server
// reads, the change is in the audit log with the person as actor, and
// turning it off again leaves the rest of the run unguarded.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';

export async function guardrailScenarios(t) {
  const { page, BASE, DB, scenario, until } = t;
  const box = (label) => page.getByRole('table', { name: 'Guardrails' }).getByLabel(label);
  const server = async () => (await page.evaluate(async () => (await (await fetch('/api/admin/projects')).json()).data))
    .find((p) => p.name === 'chat');
  const audit = () => {
    const py = 'import json,sqlite3,sys;c=sqlite3.connect(sys.argv[1]);'
      + 'print(json.dumps([list(r) for r in c.execute("select actor, after_json from audit_log '
      + 'where action = \'project.guardrails_changed\' order by id")]))';
    return JSON.parse(execFileSync('python3', ['-c', py, DB]).toString());
  };

  await scenario('the admin page turns a project\'s guardrails on and off, audited', async () => {
    await page.goto(`${BASE}/#/admin`);
    const input = box('Moderate input of chat');
    await input.waitFor();
    assert.equal(await input.isChecked(), false);
    assert.equal(await box('Moderate output of chat').isChecked(), false);
    await input.check();
    await page.getByRole('status').filter({ hasText: 'chat: input moderation is on.' }).waitFor();
    await page.reload();
    await until('the setting to show after a reload', () => box('Moderate input of chat').isChecked());
    assert.deepEqual((await server()).guardrails, { input: true, output: false });
    await box('Moderate input of chat').uncheck();
    await page.getByRole('status').filter({ hasText: 'chat: input moderation is off.' }).waitFor();
    assert.deepEqual((await server()).guardrails, { input: false, output: false });
    const rows = audit();
    assert.equal(rows.length, 2, JSON.stringify(rows));
    assert.match(rows[0][0], /^user:/);
    assert.deepEqual(JSON.parse(rows[0][1]), { input: true, output: false });
    assert.deepEqual(JSON.parse(rows[1][1]), { input: false, output: false });
    // Back to the chat, where the next scenario starts.
    await page.goto(`${BASE}/#/`);
    await page.getByRole('button', { name: 'New chat' }).waitFor();
  });
}
