#!/bin/sh
# Runs every test binary, shows its output, and closes with one line
# "tests: N passed, N failed, N skipped" summed over the cmocka groups.
# Exits non-zero if any binary failed (a crash counts as a failure).
passed=0
failed=0
skipped=0
broken=0
log=$(mktemp)
for t in "$@"; do
  start=$(date +%s)
  if ! "$t" >"$log" 2>&1; then broken=$((broken + 1)); fi
  echo "== $t ($(($(date +%s) - start)) s)"
  cat "$log"
  p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$log" | tail -1)
  f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$log" | tail -1)
  s=$(sed -n 's/^\[  SKIPPED \] \([0-9]*\) test.*/\1/p' "$log" | tail -1)
  passed=$((passed + ${p:-0}))
  failed=$((failed + ${f:-0}))
  skipped=$((skipped + ${s:-0}))
done
rm -f "$log"
# a binary that died before cmocka's summary still fails the run
[ "$broken" -gt 0 ] && [ "$failed" -eq 0 ] && failed=$broken
echo "tests: $passed passed, $failed failed, $skipped skipped"
[ "$broken" -eq 0 ]
