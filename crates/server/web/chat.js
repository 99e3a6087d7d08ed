// The chat page: the conversation list (new, rename, delete, search), the
// model picker and settings (system prompt, temperature, max tokens), the
// messages (markdown through the sanitiser), streaming with Stop,
// regenerate, edit-and-resend, export, the plan's quota, and text-file
// attachments (picked or dropped; inserted into the user message as
// context, so they are stored with the conversation and shown as chips).

import { h } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import htm from 'htm';
import { api, download, streamChat } from './api.js';
import { renderInto } from './render.js';

const html = htm.bind(h);

/** The largest attachment, in bytes, and how many one message may carry. */
export const MAX_ATTACHMENT_BYTES = 200 * 1024;
const MAX_ATTACHMENTS = 5;
const TEXT_FILE = /\.(txt|md|markdown|csv|tsv|json|jsonl|ya?ml|toml|ini|xml|html?|css|log|sql|sh|py|rs|js|mjs|ts|tsx|jsx|go|java|kt|c|h|cc|cpp|hpp|cs|rb|php|swift|r|lua|pl|scala)$/i;

function attachmentName(name) {
  return String(name).replace(/["<>\r\n]/g, '_').slice(0, 120);
}

/** The user message's text with its attachments in front, as context. */
export function withAttachments(text, files) {
  const blocks = files.map((f) => `<attachment name="${attachmentName(f.name)}">\n${f.text}\n</attachment>\n\n`);
  return blocks.join('') + text;
}

/** Splits a stored user message into its attachments and its text. */
export function splitAttachments(content) {
  const files = [];
  let rest = String(content || '');
  const head = /^<attachment name="([^"<>\r\n]*)">\n([\s\S]*?)\n<\/attachment>\n\n/;
  for (let m = head.exec(rest); m; m = head.exec(rest)) {
    files.push({ name: m[1], size: m[2].length });
    rest = rest.slice(m[0].length);
  }
  return { files, text: rest };
}

/** Reads picked or dropped files as attachments; refuses what is not text. */
async function readAttachments(fileList, current) {
  const added = [];
  const problems = [];
  for (const file of Array.from(fileList || [])) {
    if (current.length + added.length >= MAX_ATTACHMENTS) {
      problems.push(`At most ${MAX_ATTACHMENTS} files per message.`);
      break;
    }
    if (!TEXT_FILE.test(file.name) && !String(file.type).startsWith('text/')) {
      problems.push(`${file.name}: only text files (.txt, .md, .csv, .json, code) can be attached.`);
      continue;
    }
    if (file.size > MAX_ATTACHMENT_BYTES) {
      problems.push(`${file.name} is over ${MAX_ATTACHMENT_BYTES / 1024} KB.`);
      continue;
    }
    try {
      const text = new TextDecoder('utf-8', { fatal: true }).decode(await file.arrayBuffer());
      added.push({ name: file.name, size: file.size, text });
    } catch (_) {
      problems.push(`${file.name} is not UTF-8 text.`);
    }
  }
  return { added, problems };
}

function Chips({ files, onRemove }) {
  if (!files.length) return null;
  return html`<ul class="chips" aria-label="Attachments">${files.map((f, i) => html`<li key=${`${f.name}-${i}`} class="chip">
    ${f.name} <span class="size">${Math.max(1, Math.round(f.size / 1024))} KB</span>
    ${onRemove && html`<button type="button" class="small" aria-label=${`Remove attachment ${f.name}`}
      onClick=${() => onRemove(i)}>✕</button>`}</li>`)}</ul>`;
}

function Markdown({ text }) {
  const ref = useRef(null);
  useEffect(() => { if (ref.current) renderInto(ref.current, text); }, [text]);
  return html`<div class="markdown" ref=${ref}></div>`;
}

function quotaText(me) {
  const q = me.quota;
  if (!q) return '';
  const plan = (me.plan && me.plan.name) || q.plan;
  if (q.remaining === null || q.remaining === undefined) return `Plan: ${plan} · unlimited`;
  const unit = q.quota && q.quota.unit === 'messages' ? 'messages' : 'tokens';
  return `Plan: ${plan} · ${q.remaining.toLocaleString()} ${unit} left this month`;
}

const LIMIT_HELP = 'To keep chatting now, ask an owner or admin of your organisation to move you to a bigger plan '
  + '(parlance plan assign --org local).';

function Message({ message, last, busy, onEdit, onRegenerate }) {
  const [editing, setEditing] = useState(false);
  const [draft, setDraft] = useState(message.content);
  if (editing) {
    return html`<div class="msg user editing">
      <textarea aria-label="Edit message" value=${draft} onInput=${(e) => setDraft(e.target.value)} rows="3"></textarea>
      <div class="row">
        <button type="button" onClick=${() => { setEditing(false); onEdit(message, draft); }}>Save and send</button>
        <button type="button" class="secondary" onClick=${() => { setEditing(false); setDraft(message.content); }}>Cancel</button>
      </div>
    </div>`;
  }
  const user = message.role === 'user';
  const parts = user ? splitAttachments(message.content) : null;
  return html`<article class=${`msg ${message.role}`} aria-label=${user ? 'Your message' : 'Assistant message'}>
    ${user && html`<${Chips} files=${parts.files} />`}
    ${!user && message.reasoning && html`<${Reasoning} text=${message.reasoning} />`}
    ${user ? html`<div class="plain">${parts.text}</div>` : html`<${Markdown} text=${message.content} />`}
    ${message.stopped && html`<p class="note">Stopped.</p>`}
    <div class="actions">
      ${user && !busy && html`<button type="button" class="small" aria-label="Edit message"
        onClick=${() => { setDraft(message.content); setEditing(true); }}>Edit</button>`}
      ${!user && last && !busy && html`<button type="button" class="small" onClick=${onRegenerate}>Regenerate</button>`}
    </div>
  </article>`;
}

/** A thinking model's reasoning, collapsed above its answer. */
function Reasoning({ text, live }) {
  return html`<details class="reasoning">
    <summary>${live ? 'Thinking…' : 'Reasoning'}</summary>
    <div class="plain">${text}</div>
  </details>`;
}

function exportMarkdown(conv, messages) {
  const lines = [`# ${conv.title}`, '', `Model: ${conv.model}`, ''];
  if (conv.system_prompt) lines.push(`System: ${conv.system_prompt}`, '');
  for (const m of messages) lines.push(`## ${m.role === 'user' ? 'You' : 'Assistant'}`, '', m.content, '');
  return lines.join('\n');
}

export function Chat({ me, refreshMe }) {
  const [models, setModels] = useState([]);
  const [list, setList] = useState([]);
  const [search, setSearch] = useState('');
  const [conv, setConv] = useState(null);
  const [messages, setMessages] = useState([]);
  const [model, setModel] = useState('');
  const [system, setSystem] = useState('');
  const [temperature, setTemperature] = useState('0.7');
  const [maxTokens, setMaxTokens] = useState('512');
  const [toolsJson, setToolsJson] = useState('');
  const [toolChoice, setToolChoice] = useState('auto');
  const [showSettings, setShowSettings] = useState(false);
  const [showList, setShowList] = useState(false);
  const [input, setInput] = useState('');
  const [attached, setAttached] = useState([]);
  const [dragging, setDragging] = useState(false);
  const fileInput = useRef(null);
  const [streaming, setStreaming] = useState(null);
  const [error, setError] = useState(null);
  const controller = useRef(null);
  const bottom = useRef(null);
  const atLimit = me.quota && me.quota.remaining === 0;

  const loadList = (q = search) => api(`/api/conversations?search=${encodeURIComponent(q)}`)
    .then((r) => setList(r.data)).catch((e) => setError({ message: e.message }));
  useEffect(() => {
    api('/v1/models').then((r) => {
      setModels(r.data);
      setModel((current) => current || (r.data[0] && r.data[0].id) || '');
    }).catch((e) => setError({ message: e.message }));
    loadList('');
    const onKey = (e) => { if (e.key === 'Escape' && controller.current) controller.current.abort(); };
    addEventListener('keydown', onKey);
    return () => removeEventListener('keydown', onKey);
  }, []);
  useEffect(() => { if (bottom.current) bottom.current.scrollIntoView({ block: 'end' }); },
    [messages, streaming && streaming.text]);

  async function open(id) {
    setError(null);
    const c = await api(`/api/conversations/${id}`);
    setConv(c);
    setMessages(c.messages);
    if (c.model) setModel(c.model);
    setSystem(c.system_prompt || '');
    if (c.settings.temperature !== undefined) setTemperature(String(c.settings.temperature));
    if (c.settings.max_tokens !== undefined) setMaxTokens(String(c.settings.max_tokens));
    setShowList(false);
  }
  function newChat() {
    setConv(null);
    setMessages([]);
    setError(null);
    setShowList(false);
  }
  async function rename(c) {
    const title = prompt('New title', c.title);
    if (!title) return;
    await api(`/api/conversations/${c.id}`, { method: 'PATCH', body: { title } });
    if (conv && conv.id === c.id) setConv({ ...conv, title });
    loadList();
  }
  async function remove(c) {
    if (!confirm(`Delete \u201c${c.title}\u201d?`)) return;
    await api(`/api/conversations/${c.id}`, { method: 'DELETE' });
    if (conv && conv.id === c.id) newChat();
    loadList();
  }
  function settings() {
    const s = {};
    const t = parseFloat(temperature);
    if (!Number.isNaN(t)) s.temperature = t;
    const m = parseInt(maxTokens, 10);
    if (!Number.isNaN(m) && m > 0) s.max_tokens = m;
    // Tools: OpenAI function tools as JSON; what is not JSON goes as text,
    // so that the server's 400 says what is wrong.
    if (toolsJson.trim()) {
      try { s.tools = JSON.parse(toolsJson); } catch (_) { s.tools = toolsJson; }
      s.tool_choice = toolChoice;
    }
    return s;
  }

  // Streams the assistant's answer to `history` and stores it.
  async function generate(c, history) {
    const abort = new AbortController();
    controller.current = abort;
    const live = { text: '', reasoning: '' };
    setStreaming({ text: '', reasoning: '' });
    setError(null);
    const body = { model, messages: [], ...settings() };
    if (system.trim()) body.messages.push({ role: 'system', content: system });
    for (const m of history) if (!m.unsaved) body.messages.push({ role: m.role, content: m.content });
    const result = {};
    let stopped = false;
    try {
      await streamChat(body, {
        signal: abort.signal,
        info: result,
        onDelta: (piece) => { live.text += piece; setStreaming({ ...live }); },
        onReasoning: (piece) => { live.reasoning += piece; setStreaming({ ...live }); },
      });
    } catch (err) {
      if (err.name === 'AbortError') stopped = true;
      else setError({ message: err.message, code: err.code, status: err.status });
    }
    // The answer is stored before the page goes idle, so that a finished
    // answer is always in the list when Send comes back.
    try {
      if (live.text) {
        const saved = await api(`/api/conversations/${c.id}/messages`, {
          method: 'POST',
          body: {
            role: 'assistant', content: live.text,
            request_id: result.requestId || undefined,
            prompt_tokens: result.usage ? result.usage.prompt_tokens : undefined,
            completion_tokens: result.usage ? result.usage.completion_tokens : undefined,
          },
        });
        // The reasoning is shown for this session; stored messages keep
        // the answer only (it is not sent back to the model either).
        setMessages([...history, { ...saved, stopped, reasoning: live.reasoning || undefined }]);
      } else if (live.reasoning) {
        // Only reasoning came (cut off before the answer): shown, not stored.
        setMessages([...history, {
          id: `unsaved-${Date.now()}`, unsaved: true, role: 'assistant', content: '', stopped, reasoning: live.reasoning,
        }]);
      } else {
        setMessages(history);
      }
    } catch (err) {
      setError({ message: `The answer could not be saved: ${err.message}` });
    } finally {
      controller.current = null;
      setStreaming(null);
    }
    refreshMe();
    loadList();
  }

  async function attach(fileList) {
    const { added, problems } = await readAttachments(fileList, attached);
    if (added.length) setAttached([...attached, ...added]);
    setError(problems.length ? { message: problems.join(' ') } : null);
    if (fileInput.current) fileInput.current.value = '';
  }
  async function send(typed) {
    typed = typed.trim();
    if ((!typed && !attached.length) || controller.current) return;
    const text = withAttachments(typed, attached);
    const title = typed || attached.map((f) => f.name).join(', ');
    let c = conv;
    if (!c) {
      c = await api('/api/conversations', {
        method: 'POST',
        body: { title: title.split('\n')[0].slice(0, 60), model, system_prompt: system, settings: settings() },
      });
      setConv(c);
    } else {
      api(`/api/conversations/${c.id}`, {
        method: 'PATCH', body: { model, system_prompt: system, settings: settings() },
      }).catch(() => {});
    }
    const saved = await api(`/api/conversations/${c.id}/messages`, {
      method: 'POST', body: { role: 'user', content: text },
    });
    const history = [...messages, saved];
    setMessages(history);
    setInput('');
    setAttached([]);
    await generate(c, history);
  }
  async function regenerate() {
    const last = messages[messages.length - 1];
    if (!conv || !last || last.role !== 'assistant') return;
    if (!last.unsaved) {
      await api(`/api/conversations/${conv.id}/truncate`, { method: 'POST', body: { from_message_id: last.id } });
    }
    const history = messages.slice(0, -1);
    setMessages(history);
    await generate(conv, history);
  }
  async function editAndResend(message, text) {
    const at = messages.findIndex((m) => m.id === message.id);
    if (!conv || at < 0 || !text.trim()) return;
    await api(`/api/conversations/${conv.id}/truncate`, { method: 'POST', body: { from_message_id: message.id } });
    const history = messages.slice(0, at);
    const saved = await api(`/api/conversations/${conv.id}/messages`, {
      method: 'POST', body: { role: 'user', content: text.trim() },
    });
    setMessages([...history, saved]);
    await generate(conv, [...history, saved]);
  }
  function onKeyDown(e) {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      send(input);
    }
  }
  function exportAs(kind) {
    if (!conv) return;
    const name = conv.title.replace(/[^\w.-]+/g, '_').slice(0, 60) || 'conversation';
    if (kind === 'json') {
      download(`${name}.json`, 'application/json', JSON.stringify({ ...conv, messages }, null, 2));
    } else {
      download(`${name}.md`, 'text/markdown', exportMarkdown(conv, messages));
    }
  }

  const busy = Boolean(streaming);
  const quotaError = error && (error.code === 'insufficient_quota' || error.status === 429);
  return html`<div class=${`chat ${showList ? 'list-open' : ''}`}>
    <aside class="sidebar" aria-label="Conversations">
      <button type="button" class="primary" onClick=${newChat}>New chat</button>
      <input type="search" aria-label="Search conversations" placeholder="Search"
        value=${search} onInput=${(e) => { setSearch(e.target.value); loadList(e.target.value); }} />
      <ul>
        ${list.map((c) => html`<li key=${c.id} class=${conv && conv.id === c.id ? 'current' : ''}>
          <button type="button" class="title" onClick=${() => open(c.id)}>${c.title}</button>
          <button type="button" class="small" aria-label=${`Rename ${c.title}`} onClick=${() => rename(c)}>✎</button>
          <button type="button" class="small" aria-label=${`Delete ${c.title}`} onClick=${() => remove(c)}>✕</button>
        </li>`)}
      </ul>
      <p class="quota" aria-label="Plan and quota">${quotaText(me)}</p>
    </aside>
    <main class="conversation">
      <header class="bar">
        <button type="button" class="menu" aria-label="Show conversations" aria-expanded=${showList}
          onClick=${() => setShowList(!showList)}>☰</button>
        <label class="model">Model
          <select aria-label="Model" value=${model} onChange=${(e) => setModel(e.target.value)}>
            ${models.map((m) => html`<option value=${m.id}>${m.id}</option>`)}
          </select></label>
        <button type="button" class="secondary" aria-expanded=${showSettings} onClick=${() => setShowSettings(!showSettings)}>Settings</button>
        ${conv && html`<button type="button" class="secondary" onClick=${() => exportAs('md')}>Export Markdown</button>
          <button type="button" class="secondary" onClick=${() => exportAs('json')}>Export JSON</button>`}
      </header>
      ${showSettings && html`<section class="settings" aria-label="Settings">
        <label>System prompt<textarea rows="2" value=${system} onInput=${(e) => setSystem(e.target.value)}></textarea></label>
        <label>Temperature<input type="number" min="0" max="2" step="0.1" value=${temperature}
          onInput=${(e) => setTemperature(e.target.value)} /></label>
        <label>Max tokens<input type="number" min="1" step="1" value=${maxTokens}
          onInput=${(e) => setMaxTokens(e.target.value)} /></label>
        <label>Tools (JSON)<textarea rows="2" placeholder='[{"type": "function", "function": {"name": …}}]'
          value=${toolsJson} onInput=${(e) => setToolsJson(e.target.value)}></textarea></label>
        <label>Tool choice<select value=${toolChoice} onChange=${(e) => setToolChoice(e.target.value)}>
          <option value="auto">auto</option><option value="required">required</option><option value="none">none</option>
        </select></label>
      </section>`}
      <section class="messages" aria-label="Messages" aria-live="polite">
        ${!messages.length && !busy && html`<p class="empty">Ask anything. Enter sends, Shift+Enter adds a line, Esc stops.</p>`}
        ${messages.map((m, i) => html`<${Message} key=${m.id} message=${m} busy=${busy}
          last=${i === messages.length - 1} onEdit=${editAndResend} onRegenerate=${regenerate} />`)}
        ${busy && html`<article class="msg assistant streaming" aria-label="Assistant message" aria-busy="true">
          ${streaming.reasoning && html`<${Reasoning} text=${streaming.reasoning} live=${!streaming.text} />`}
          <${Markdown} text=${streaming.text || '…'} /></article>`}
        <div ref=${bottom}></div>
      </section>
      ${(atLimit || quotaError) && html`<p class="error limit" role="alert">
        ${quotaError ? error.message : 'You have used all of this month\u2019s quota of your plan; it renews at the start of next month.'} ${LIMIT_HELP}</p>`}
      ${error && !quotaError && html`<p class="error" role="alert">${error.message}</p>`}
      <form class=${`composer ${dragging ? 'dragging' : ''}`} onSubmit=${(e) => { e.preventDefault(); send(input); }}
        onDragOver=${(e) => { e.preventDefault(); setDragging(true); }} onDragLeave=${() => setDragging(false)}
        onDrop=${(e) => { e.preventDefault(); setDragging(false); attach(e.dataTransfer && e.dataTransfer.files); }}>
        <${Chips} files=${attached} onRemove=${(i) => setAttached(attached.filter((_, j) => j !== i))} />
        <div class="row">
          <input ref=${fileInput} type="file" multiple class="visually-hidden" id="attach-files"
            aria-label="Attach text files" onChange=${(e) => attach(e.target.files)} />
          <button type="button" class="secondary attach" aria-label="Attach files"
            title=${`Attach text files (up to ${MAX_ATTACHMENT_BYTES / 1024} KB each), or drop them here`}
            onClick=${() => fileInput.current && fileInput.current.click()}>Attach</button>
          <textarea aria-label="Message" rows="2" placeholder="Message" value=${input}
            onInput=${(e) => setInput(e.target.value)} onKeyDown=${onKeyDown}></textarea>
          ${busy
            ? html`<button type="button" class="stop" onClick=${() => controller.current && controller.current.abort()}>Stop</button>`
            : html`<button type="submit" class="primary" disabled=${!input.trim() && !attached.length}>Send</button>`}
        </div>
      </form>
    </main>
  </div>`;
}
