#!/usr/bin/env bash
# Text check: the repository describes the software as it is. Fails on text that points outside the
# repository (design notes that are not in it), cites issue numbers, or tells how the code was developed
# (sessions, rounds, "the previous binary", commit hashes). Scans README.md, docs/, Sources/, Tests/,
# launch/, cluster/ and .ci/ (text files only), prints every hit as FILE:LINE: TEXT and exits 1 if any.
#   bash launch/check-text.sh [PATH...]      (default: the folders above)
set -euo pipefail
cd "$(dirname "$0")/.."
self="launch/check-text.sh"

# One extended regular expression per kind of hit (grep -E). Chosen so that ordinary words do not match:
# "rounding", "round-off", "helper functions", "an ssh session" and binary fixtures are not hits.
outside='\.\./shared|shared/design|SPEC\.md|SPEC §|ARCHITECTURE\.md|CLUSTER\.md|STYLE\.md|/work/'
issues='\b[Ii]ssues? #?[0-9]|(^|[[:space:](])#[0-9]+\b'
history='\b(previous|this|that|the old|the new) binary\b|'
history+='\b(this|that|previous|next|earlier|later|first|second|third|fourth|fifth|sixth) sessions?\b|'
history+="\\bsessions?'s?( binary| measurements| changes)|\\bhelper's|\\b(another|other) helpers?\\b|"
history+='\bhelpers? (session|wrote|measured|ran|found)\b|\b[Rr]ound [0-9]|\bcommit [0-9a-f]{7,40}\b'

# "#N" is code in Swift (`#if`, `#file`), shell (`$#`), YAML and the like; it counts only in prose: Markdown
# outside code spans, and comments of Python/shell files that look like sentences.
if [ "$#" -gt 0 ]; then paths=("$@"); else paths=(README.md docs Sources Tests launch cluster .ci); fi
existing=()
for p in "${paths[@]}"; do [ -e "$p" ] && existing+=("$p"); done

hits=0
report() {   # FILE:LINE:TEXT lines on stdin
    while IFS= read -r line; do
        [ -z "$line" ] && continue
        file="${line%%:*}"
        [ "$file" = "$self" ] && continue
        echo "$line"
        hits=$((hits + 1))
    done
}

# -I skips binary files; fixtures written by other tools (npy, safetensors, tfevents) are binary.
report < <(grep -rnIE "$outside|$history" "${existing[@]}" 2>/dev/null || true)
report < <(grep -rnIE "$issues" "${existing[@]}" 2>/dev/null \
    | grep -vE '^[^:]+\.(swift|c|h|json|yaml|yml|modulemap|txt):' \
    | grep -vE '^[^:]+:[0-9]+:.*(`[^`]*#[0-9]+[^`]*`)' \
    | grep -vE '\$#|#[0-9]+[a-z_]|["'"'"'][^"'"'"']*#[0-9]+' || true)
# In Swift and C, issue numbers are found in comments only.
report < <(grep -rnIE '//.*\b[Ii]ssues? #?[0-9]' "${existing[@]}" --include='*.swift' --include='*.c' \
    --include='*.h' 2>/dev/null || true)

if [ "$hits" -gt 0 ]; then
    echo "check-text: $hits line(s) refer to files outside the repository, issue numbers or development history" >&2
    exit 1
fi
echo "check-text: ok"
