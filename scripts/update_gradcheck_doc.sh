#!/usr/bin/env bash
# Regenerates the gradient-check report in docs/derivations.md from what
# ./build/tests/gradcheck prints now (build first: scripts/test.sh or setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
doc=docs/derivations.md
report=$(./build/tests/gradcheck) || { echo "update_gradcheck_doc.sh: gradcheck failed; the doc is unchanged" >&2; exit 1; }
begin='<!-- GRADCHECK TABLE BEGIN -->'
end='<!-- GRADCHECK TABLE END -->'
grep -qF "$begin" "$doc" && grep -qF "$end" "$doc" || { echo "update_gradcheck_doc.sh: $doc lacks the table markers" >&2; exit 1; }
tmp=$(mktemp "$doc.XXXXXX")
awk -v begin="$begin" -v end="$end" -v report="$report" '
  $0 == begin { print; print "```"; print report; print "```"; skipping = 1; next }
  $0 == end   { skipping = 0 }
  !skipping   { print }' "$doc" > "$tmp"
mv "$tmp" "$doc"
echo "update_gradcheck_doc.sh: $doc updated"
