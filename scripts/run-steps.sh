#!/usr/bin/env bash
# Runs test steps one after the other and ends with ONE line of totals across all of them:
#   N passed, M failed
#
#   bash scripts/run-steps.sh "CMD 1" "CMD 2" ...
#
# Each argument is a command line (run with bash -c); its output goes to the terminal as it
# runs. What a step counts:
#   - cargo test: the sum of its "test result: ... N passed; M failed" lines; tests it
#     ignored are listed by name with their reason ("excluded: ...") in the summary;
#   - any other step: the last line of its output of the form "N passed, M failed" (every
#     e2e check ends with one), so a new check plugs in by being added to the list;
#   - a step without counts (a build, a lint) counts nothing when it succeeds.
# A step that fails without a failed count of its own (it died, or it has no counts) adds
# one failure in its name. Every step runs, whatever the earlier ones did; the exit status
# is 0 only when nothing failed.
set -uo pipefail

[ "$#" -gt 0 ] || { echo "usage: $0 'command' ['command' ...]" >&2; exit 2; }

LOGS="$(mktemp -d "${TMPDIR:-/tmp}/vsip-steps.XXXXXX")"
trap 'rm -rf "$LOGS"' EXIT
total_passed=0
total_failed=0
summary=()
excluded=()

# count LOG: prints "PASSED FAILED" for a step's output, or nothing when it has no counts.
count() {
  local log="$1"
  if grep -q '^test result: ' "$log"; then
    awk '/^test result: / {
           for (i = 1; i <= NF; i++) {
             if ($(i+1) ~ /^passed;/) p += $i
             if ($(i+1) ~ /^failed;/) f += $i
           }
         }
         END { print p + 0, f + 0 }' "$log"
    return
  fi
  grep -Eo '[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1 | awk '{ print $1, $3 }'
}

n=0
for step in "$@"; do
  n=$((n + 1))
  log="$LOGS/step-$n.log"
  printf '\n=== [%d/%d] %s\n' "$n" "$#" "$step"
  started=$SECONDS
  bash -c "$step" 2>&1 | tee "$log.raw"
  rc=${PIPESTATUS[0]}
  sed 's/\x1b\[[0-9;]*m//g' "$log.raw" >"$log"  # without colour codes, for counting
  took=$((SECONDS - started))
  read -r p f < <(count "$log"; echo) || true
  if [ -n "${p:-}" ]; then
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
    line="$p passed, $f failed"
  elif [ "$rc" -ne 0 ]; then
    p=0; f=1; line="failed (exit $rc, no counts)"
  else
    p=0; f=0; line="ok"
  fi
  total_passed=$((total_passed + p))
  total_failed=$((total_failed + f))
  summary+=("$(printf '%-16s %4ds  %s' "$line" "$took" "$step")")
  while IFS= read -r t; do excluded+=("$t"); done < <(
    sed -n 's/^test \(.*\) \.\.\. ignored\(, \(.*\)\)\{0,1\}$/\1 (\3)/p' "$log" | sed 's/ ()$/ (no reason given)/')
  unset p f
done

printf '\n=== summary\n'
printf '%s\n' "${summary[@]}"
for e in "${excluded[@]}"; do printf 'excluded: %s\n' "$e"; done
echo "$total_passed passed, $total_failed failed"
[ "$total_failed" -eq 0 ]
