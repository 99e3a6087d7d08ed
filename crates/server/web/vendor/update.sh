#!/usr/bin/env bash
# Re-vendors the web app's front-end libraries, unmodified, from the npm
# registry (the only use of npm: nothing here is needed to build or run).
# Usage: crates/server/web/vendor/update.sh   (then review and commit; bump VERSIONS)
set -euo pipefail
cd "$(dirname "$0")"
PREACT=${PREACT:-10.29.8} HTM=${HTM:-3.1.1} MARKED=${MARKED:-18.2.1}
DOMPURIFY=${DOMPURIFY:-3.5.0} HLJS=${HLJS:-11.12.0} KATEX=${KATEX:-0.19.1}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack -q "preact@$PREACT" "htm@$HTM" "marked@$MARKED" \
  "dompurify@$DOMPURIFY" "@highlightjs/cdn-assets@$HLJS" "katex@$KATEX" >/dev/null)
x() { mkdir -p "$tmp/$1" && tar xzf "$tmp/$2" -C "$tmp/$1"; }
x preact "preact-$PREACT.tgz"; x htm "htm-$HTM.tgz"; x marked "marked-$MARKED.tgz"
x dompurify "dompurify-$DOMPURIFY.tgz"; x hljs "highlightjs-cdn-assets-$HLJS.tgz"
x katex "katex-$KATEX.tgz"
mkdir -p preact htm marked dompurify highlight katex
cp "$tmp/preact/package/dist/preact.module.js" "$tmp/preact/package/hooks/dist/hooks.module.js" \
   "$tmp/preact/package/LICENSE" preact/
cp "$tmp/htm/package/dist/htm.module.js" "$tmp/htm/package/LICENSE" htm/
cp "$tmp/marked/package/lib/marked.esm.js" "$tmp/marked/package/LICENSE" marked/
cp "$tmp/dompurify/package/dist/purify.es.mjs" "$tmp/dompurify/package/LICENSE" dompurify/
cp "$tmp/hljs/package/es/highlight.min.js" "$tmp/hljs/package/styles/github.min.css" \
   "$tmp/hljs/package/styles/github-dark.min.css" "$tmp/hljs/package/LICENSE" highlight/
cp "$tmp/katex/package/dist/katex.mjs" "$tmp/katex/package/LICENSE" katex/
cat > VERSIONS <<VERSIONS
# package            version   files taken (unmodified) from the npm tarball
preact               $PREACT   dist/preact.module.js hooks/dist/hooks.module.js LICENSE
htm                  $HTM    dist/htm.module.js LICENSE
marked               $MARKED    lib/marked.esm.js LICENSE
dompurify            $DOMPURIFY     dist/purify.es.mjs LICENSE (Apache-2.0 OR MPL-2.0; Apache-2.0 chosen)
@highlightjs/cdn-assets $HLJS es/highlight.min.js styles/github.min.css styles/github-dark.min.css LICENSE
katex                $KATEX    dist/katex.mjs LICENSE (loaded only for messages with math; MathML output)
VERSIONS
