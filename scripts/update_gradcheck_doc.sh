#!/usr/bin/env bash
# Regenerates the op table's reports from what ./build/tests/gradcheck prints now
# (build first: scripts/test.sh or setup.sh): the full report in docs/derivations.md,
# the per-row summary in docs/testing.md.
set -euo pipefail
cd "$(dirname "$0")/.."

# replace FILE BEGIN_MARKER END_MARKER TEXT: TEXT between the two marker lines.
replace() {
  local doc=$1 begin=$2 end=$3 text=$4
  grep -qF "$begin" "$doc" && grep -qF "$end" "$doc" || { echo "update_gradcheck_doc.sh: $doc lacks the markers $begin" >&2; exit 1; }
  local tmp
  tmp=$(mktemp "$doc.XXXXXX")
  awk -v begin="$begin" -v end="$end" -v text="$text" '
    $0 == begin { print; print text; skipping = 1; next }
    $0 == end   { skipping = 0 }
    !skipping   { print }' "$doc" > "$tmp"
  mv "$tmp" "$doc"
  echo "update_gradcheck_doc.sh: $doc updated"
}

report=$(./build/tests/gradcheck) || { echo "update_gradcheck_doc.sh: gradcheck failed; the docs are unchanged" >&2; exit 1; }
summary=$(./build/tests/gradcheck --summary)
replace docs/derivations.md '<!-- GRADCHECK TABLE BEGIN -->' '<!-- GRADCHECK TABLE END -->' $'```\n'"$report"$'\n```'
replace docs/testing.md '<!-- GRADCHECK SUMMARY BEGIN -->' '<!-- GRADCHECK SUMMARY END -->' "$summary"
