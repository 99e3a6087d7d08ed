// The app's calls to its server: JSON helpers for /api and /v1 (the session
// cookie rides along; every call sends the CSRF header), and the streaming
// chat completion reader.

/** An error answer of the server, with its OpenAI error object fields. */
export class ApiError extends Error {
  constructor(status, error) {
    super((error && error.message) || `The server answered ${status}.`);
    this.status = status;
    this.code = error && error.code;
    this.type = error && error.type;
  }
}

async function failure(res) {
  let error = null;
  try { error = (await res.json()).error; } catch (_) { /* not JSON */ }
  return new ApiError(res.status, error);
}

/** Calls `path` with an optional JSON body; answers the parsed JSON. */
export async function api(path, { method = 'GET', body, signal } = {}) {
  const headers = { 'x-parlance-csrf': '1' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(path, {
    method, headers, signal, credentials: 'same-origin',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!res.ok) throw await failure(res);
  const text = await res.text();
  return text ? JSON.parse(text) : null;
}

/**
 * Streams a chat completion: calls `onDelta(text)` for every piece of
 * text and `onReasoning(text)` for every piece of a thinking model's
 * reasoning (`reasoning_content`, or `reasoning` under vLLM's name), and fills `info` (and answers it) with `{ requestId, usage,
 * finishReason }` as they become known, so that a stopped request still
 * has its id. Aborting `signal` stops the request (the server stops
 * generating and bills what was generated).
 */
export async function streamChat(request, { signal, onDelta, onReasoning = () => {}, info = {} }) {
  const res = await fetch('/v1/chat/completions', {
    method: 'POST', signal, credentials: 'same-origin',
    headers: { 'content-type': 'application/json', 'x-parlance-csrf': '1' },
    body: JSON.stringify({ ...request, stream: true, stream_options: { include_usage: true } }),
  });
  if (!res.ok) throw await failure(res);
  const result = Object.assign(info, { requestId: res.headers.get('x-request-id'), usage: null, finishReason: null });
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf('\n\n')) >= 0) {
      const event = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const data = event.split('\n').filter((l) => l.startsWith('data:'))
        .map((l) => l.slice(5).trim()).join('\n');
      if (!data || data === '[DONE]') continue;
      const chunk = JSON.parse(data);
      if (chunk.error) throw new ApiError(500, chunk.error);
      if (chunk.usage) result.usage = chunk.usage;
      for (const choice of chunk.choices || []) {
        const thought = choice.delta && (choice.delta.reasoning_content || choice.delta.reasoning);
        if (thought) onReasoning(thought);
        if (choice.delta && choice.delta.content) onDelta(choice.delta.content);
        // A tool call reads as a heading with its arguments in a JSON block.
        for (const call of (choice.delta && choice.delta.tool_calls) || []) {
          const fn = call.function || {};
          if (fn.name) {
            if (result.toolCalls) onDelta('\n```\n');
            result.toolCalls = (result.toolCalls || 0) + 1;
            onDelta(`\n\n**Tool call** \`${fn.name}\`\n\n\`\`\`json\n`);
          }
          if (fn.arguments) onDelta(fn.arguments);
        }
        if (choice.finish_reason) {
          if (result.toolCalls) onDelta('\n```\n');
          result.finishReason = choice.finish_reason;
        }
      }
    }
  }
  return result;
}

/** Saves `text` as a download called `name`. */
export function download(name, type, text) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}
