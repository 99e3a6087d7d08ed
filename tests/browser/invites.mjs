// The Admin page's invite section in the browser (run.mjs calls
// `inviteScenarios` after more.mjs): the owner invites someone, the page
// shows the one-time link once and lists the invite; a new person opens the
// link in their own browser and joins with the invited role without
// waiting for approval; a person whose sign-up still waits opens their link,
// signs in from it and joins; a deleted invite's link joins no one.

import assert from 'node:assert/strict';

export async function inviteScenarios(t) {
  const { page, browser, BASE, scenario } = t;
  const invites = () => page.getByRole('table', { name: 'Invites' });
  const row = (email) => invites().getByRole('row').filter({ hasText: email });

  // Invites `email` as `role` on the Admin page; answers the link it shows.
  async function invite(email, role) {
    await page.goto(`${BASE}/#/admin`);
    const form = page.getByRole('form', { name: 'Invite someone' });
    await form.getByLabel('Email').fill(email);
    await form.getByLabel('Role').selectOption(role);
    await form.getByRole('button', { name: 'Invite' }).click();
    await page.getByRole('status').filter({ hasText: `Invited ${email}` }).waitFor();
    const link = await page.getByLabel('Invite link').inputValue();
    assert.match(link, /\/#\/signup\?invite=[A-Za-z0-9_-]+$/, link);
    await row(email).filter({ hasText: 'pending' }).waitFor();
    return link;
  }

  // A fresh browser (no session) for someone else.
  async function stranger() {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    return { context, tab: await context.newPage() };
  }

  await scenario('an invite made on the admin page lets a new person join with its role at once', async () => {
    const link = await invite('ivy@example.com', 'reader');
    // The link is shown once: after a reload only the list remains.
    await page.reload();
    await row('ivy@example.com').waitFor();
    assert.equal(await page.getByLabel('Invite link').count(), 0, 'the link is not shown again');
    const { context, tab } = await stranger();
    await tab.goto(link);
    await tab.getByRole('heading', { name: 'You are invited: create your account' }).waitFor();
    await tab.getByLabel('Name').fill('Ivy');
    await tab.getByLabel('Email').fill('ivy@example.com');
    await tab.getByLabel('Password').fill('invited in');
    await tab.getByRole('button', { name: 'Sign up' }).click();
    await tab.getByRole('button', { name: 'New chat' }).waitFor();
    const me = await tab.evaluate(async () => (await fetch('/api/me')).json());
    assert.equal(me.role, 'reader', JSON.stringify(me));
    await context.close();
    await page.reload();
    await row('ivy@example.com').filter({ hasText: 'accepted' }).waitFor();
    assert.equal(await page.getByRole('button', { name: 'Delete the invite for ivy@example.com' }).count(), 0,
      'an accepted invite cannot be deleted');
    await page.getByLabel('Role of ivy@example.com').waitFor();
  });

  await scenario('a person waiting for approval signs in from an invite link and joins', async () => {
    const { context, tab } = await stranger();
    await tab.goto(BASE);
    await tab.getByLabel('Name').fill('Ida');
    await tab.getByLabel('Email').fill('ida@example.com');
    await tab.getByLabel('Password').fill('waiting room');
    await tab.getByRole('button', { name: 'Sign up' }).click();
    await tab.getByRole('status').filter({ hasText: /must approve your account/ }).waitFor();
    const link = await invite('ida@example.com', 'member');
    // A fresh load of the link (the form had turned to sign-in already).
    await tab.goto(link);
    await tab.reload();
    await tab.getByRole('button', { name: 'Sign in instead' }).click();
    await tab.getByRole('heading', { name: 'You are invited: sign in to join' }).waitFor();
    await tab.getByLabel('Email').fill('ida@example.com');
    await tab.getByLabel('Password').fill('waiting room');
    await tab.getByRole('button', { name: 'Sign in' }).click();
    await tab.getByRole('button', { name: 'New chat' }).waitFor();
    assert.ok(!tab.url().includes('invite='), `the used link is left: ${tab.url()}`);
    await context.close();
    await page.reload();
    await row('ida@example.com').filter({ hasText: 'accepted' }).waitFor();
    await page.getByRole('table', { name: 'Pending sign-ups' }).getByText('No one is waiting.').waitFor();
    const audit = await page.evaluate(async () => (await fetch('/v1/organization/audit_logs?format=csv')).text());
    assert.ok(audit.includes('invite.created') && audit.includes('invite.accepted'), audit.slice(-2000));
  });

  await scenario('a deleted invite disappears from the admin page and its link joins no one', async () => {
    const link = await invite('zed@example.com', 'member');
    await page.getByRole('button', { name: 'Delete the invite for zed@example.com' }).click();
    await page.getByRole('status').filter({ hasText: 'The invite for zed@example.com was deleted.' }).waitFor();
    await invites().getByRole('row').filter({ hasText: 'zed@example.com' }).waitFor({ state: 'detached' });
    const { context, tab } = await stranger();
    await tab.goto(link);
    await tab.getByLabel('Name').fill('Zed');
    await tab.getByLabel('Email').fill('zed@example.com');
    await tab.getByLabel('Password').fill('too late now');
    await tab.getByRole('button', { name: 'Sign up' }).click();
    await tab.getByRole('alert').filter({ hasText: /unknown, used or expired/ }).waitFor();
    assert.equal((await context.cookies()).length, 0, 'no session from a dead link');
    await context.close();
  });
}
