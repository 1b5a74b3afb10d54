# Shared by the paper scripts: paths, and steps that skip work already done
# (a killed script re-run continues where it stopped; training resumes from
# its checkpoint). Sourced, not run.
set -e
root=${ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
shared=${SHARED:-$root/../shared/data}
threads=${THREADS:-2}
mr="$root/build/medrobust"
make -s -C "$root" build/medrobust
if [ ! -d "$shared" ]; then
  echo "skipped: $shared is absent (set SHARED=/path/to/shared/data)"
  exit 0
fi

# train OUT ARGS...: train unless OUT exists; resumes an interrupted run
train() {
  out=$1
  shift
  if [ -f "$out" ] && [ ! -f "$out.ckpt.partial" ]; then return; fi
  touch "$out.ckpt.partial"
  resume=""
  [ -f "$out.ckpt" ] && resume=--resume
  echo "== train $out $*"
  "$mr" --threads "$threads" train "$@" --out "$out" --quiet $resume
  rm -f "$out.ckpt.partial"
}

# compare DIR ARGS...: unless DIR/compare.json exists
compare() {
  dir=$1
  shift
  [ -f "$dir/compare.json" ] && return
  echo "== compare $dir"
  "$mr" --threads "$threads" compare "$@" --out "$dir" --quiet
}

# eval DIR ARGS...: unless DIR/results.json exists
evaluate() {
  dir=$1
  shift
  [ -f "$dir/results.json" ] && return
  echo "== eval $dir"
  "$mr" --threads "$threads" eval "$@" --out "$dir" --quiet --no-noise --no-checks --examples 0 > /dev/null
}

timed() {
  start=$(date +%s)
  "$@"
  echo "$* took $(($(date +%s) - start)) s" | tee -a "$out_dir/times.txt"
}
