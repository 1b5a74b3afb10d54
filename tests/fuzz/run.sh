#!/bin/sh
# Runs each fuzz target for SECONDS from its seed corpus; fails if any target finds a crash,
# leak, timeout or undefined behaviour (the reproducer is left as build-fuzz/crash-* etc.). New inputs the fuzzer
# finds go to build-fuzz/corpus/NAME, never into the seed corpus.
# usage: run.sh SECONDS TARGET...
set -e
failed=
seconds=$1
shift
mkdir -p build-fuzz/corpus
for bin in "$@"; do
  name=${bin##*/fuzz_}
  mkdir -p "build-fuzz/corpus/$name"
  log=build-fuzz/$name.log
  if ! "$bin" -max_total_time="$seconds" -rss_limit_mb=4096 -timeout=20 -print_final_stats=1 \
      -artifact_prefix=build-fuzz/ "build-fuzz/corpus/$name" "tests/fuzz/corpus/$name" \
      > "$log" 2>&1; then
    # the sanitizer's report (libnifti's own "** ERROR" lines are not ours)
    grep -E "^==[0-9]+==ERROR|runtime error|SUMMARY|#[0-9]+ .* in .*/(src|tests)/|Test unit written" "$log" | head -20
    echo "fuzz $name: FAILED (log: $log)"
    failed="$failed $name"
    continue
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  echo "fuzz $name: ${runs:-?} inputs in ${seconds}s, no crash"
done
if [ -n "$failed" ]; then
  echo "fuzz: failed:$failed"
  exit 1
fi
