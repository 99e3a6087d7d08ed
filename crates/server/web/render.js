// Model output to safe HTML: markdown through marked (raw HTML in the
// markdown is shown as text, never parsed), code highlighted by
// highlight.js, and the result through DOMPurify before it touches the DOM.
// `renderInto` also gives every code block a copy button.
//
// Math (`$…$`, `$$…$$`, `\(…\)`, `\[…\]`, outside code) is typeset by KaTeX
// as MathML, loaded only when a message has math; until it has loaded the
// TeX shows as text. KaTeX runs untrusted (`trust: false`, so no \href,
// \url, \html…) and its output goes through DOMPurify like the rest.

import { Marked } from 'marked';
import DOMPurify from 'dompurify';
import hljs from 'highlight.js';

function escapeHtml(text) {
  return text.replace(/[&<>"']/g, (c) => ({
    '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;',
  })[c]);
}

let katex = null;
let katexLoading = null;

/** Loads KaTeX once; answers a promise that settles when it is there. */
function loadKatex() {
  if (!katexLoading) {
    katexLoading = import('katex').then((m) => { katex = m.default; })
      .catch(() => { katexLoading = null; });
  }
  return katexLoading;
}

// Display math first, then inline; `$` needs a non-space after it and
// before the closing `$`, which is not followed by a digit ("$5 and $6").
const MATH = [
  { re: /^\$\$([\s\S]+?)\$\$/, display: true },
  { re: /^\\\[([\s\S]+?)\\\]/, display: true },
  { re: /^\\\(([\s\S]+?)\\\)/, display: false },
  { re: /^\$(?![\s$])((?:\\.|[^\\$\n])+?)(?<!\s)\$(?!\d)/, display: false },
];

const ANY_MATH = /\$\$[\s\S]+?\$\$|\\\[[\s\S]+?\\\]|\\\([\s\S]+?\\\)|\$(?![\s$])(?:\\.|[^\\$\n])+?(?<!\s)\$(?!\d)/;

/** Whether `text` may have math for KaTeX (it may still be inside code). */
export function hasMath(text) {
  return ANY_MATH.test(String(text || ''));
}

function typeset(tex, display) {
  if (!katex) return `<span class="math pending">${escapeHtml(display ? `$$${tex}$$` : `$${tex}$`)}</span>`;
  try {
    return katex.renderToString(tex, {
      displayMode: display, output: 'mathml', throwOnError: true, trust: false,
      strict: 'ignore', maxSize: 50, maxExpand: 1000,
    });
  } catch (_) {
    // Not valid TeX: shown as code (KaTeX's own error markup carries an
    // inline style, which the CSP refuses).
    return `<code class="math error">${escapeHtml(tex)}</code>`;
  }
}

const mathExtension = {
  name: 'math',
  level: 'inline',
  start(src) {
    const at = src.search(/\$|\\[[(]/);
    return at < 0 ? undefined : at;
  },
  tokenizer(src) {
    for (const { re, display } of MATH) {
      const m = re.exec(src);
      if (m) return { type: 'math', raw: m[0], text: m[1].trim(), display };
    }
    return undefined;
  },
  renderer(token) { return typeset(token.text, token.display); },
};

const marked = new Marked({
  extensions: [mathExtension],
  gfm: true,
  breaks: true,
  renderer: {
    // Raw HTML from the model is text.
    html(token) { return escapeHtml(token.text || token.raw || ''); },
    code(token) {
      const lang = (token.lang || '').trim().split(/\s+/)[0];
      let body;
      try {
        body = lang && hljs.getLanguage(lang)
          ? hljs.highlight(token.text, { language: lang, ignoreIllegals: true }).value
          : escapeHtml(token.text);
      } catch (_) {
        body = escapeHtml(token.text);
      }
      const cls = lang && hljs.getLanguage(lang) ? ` language-${escapeHtml(lang)}` : '';
      return `<pre><code class="hljs${cls}">${body}</code></pre>\n`;
    },
  },
});

DOMPurify.addHook('afterSanitizeAttributes', (node) => {
  if (node.tagName === 'A') {
    node.setAttribute('target', '_blank');
    node.setAttribute('rel', 'noopener noreferrer nofollow');
  }
});

const PURIFY = {
  USE_PROFILES: { html: true, mathMl: true },
  // KaTeX's MathML keeps its TeX in <semantics><annotation>, which is
  // text and never rendered.
  ADD_TAGS: ['semantics', 'annotation'],
  ADD_ATTR: ['encoding'],
  FORBID_TAGS: ['style', 'form', 'input', 'button', 'textarea', 'select', 'iframe'],
  FORBID_ATTR: ['style'],
  ALLOWED_URI_REGEXP: /^(?:https?:|mailto:|#|\/(?!\/))/i,
};

/** Markdown to sanitised HTML (a string). */
export function renderMarkdown(text) {
  const html = marked.parse(String(text || ''), { async: false });
  return DOMPurify.sanitize(html, PURIFY);
}

const shown = new WeakMap();

/**
 * Renders markdown into `element`, adding a copy button to each code
 * block; when it has math and KaTeX is not loaded yet, loads it and
 * renders again (unless the element shows other text by then).
 */
export function renderInto(element, text) {
  if (!katex && hasMath(text)) {
    loadKatex().then(() => {
      if (katex && element.isConnected && shown.get(element) === text) renderInto(element, text);
    });
  }
  shown.set(element, text);
  element.innerHTML = renderMarkdown(text);
  for (const pre of element.querySelectorAll('pre')) {
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'copy';
    button.textContent = 'Copy';
    button.setAttribute('aria-label', 'Copy code');
    button.addEventListener('click', async () => {
      const code = pre.querySelector('code');
      try {
        await navigator.clipboard.writeText(code ? code.textContent : pre.textContent);
        button.textContent = 'Copied';
      } catch (_) {
        button.textContent = 'Copy failed';
      }
      setTimeout(() => { button.textContent = 'Copy'; }, 1500);
    });
    pre.prepend(button);
  }
}
