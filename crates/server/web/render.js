// Model output to safe HTML: markdown through marked (raw HTML in the
// markdown is shown as text, never parsed), code highlighted by
// highlight.js, and the result through DOMPurify before it touches the DOM.
// `renderInto` also gives every code block a copy button.

import { Marked } from 'marked';
import DOMPurify from 'dompurify';
import hljs from 'highlight.js';

function escapeHtml(text) {
  return text.replace(/[&<>"']/g, (c) => ({
    '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;',
  })[c]);
}

const marked = new Marked({
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
  USE_PROFILES: { html: true },
  FORBID_TAGS: ['style', 'form', 'input', 'button', 'textarea', 'select', 'iframe'],
  FORBID_ATTR: ['style'],
  ALLOWED_URI_REGEXP: /^(?:https?:|mailto:|#|\/(?!\/))/i,
};

/** Markdown to sanitised HTML (a string). */
export function renderMarkdown(text) {
  const html = marked.parse(String(text || ''), { async: false });
  return DOMPurify.sanitize(html, PURIFY);
}

/** Renders markdown into `element`, adding a copy button to each code block. */
export function renderInto(element, text) {
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
