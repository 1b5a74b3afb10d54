"""Compares two triage runs of bench/triage.sh: bisect/ (PGD bisection) and fmn/ (one FMN
run). Per image, the smaller smallest-flipping eps is the tighter bound (both are eps at which
an adversarial example was found)."""
import csv
import math
import statistics
import sys

out = sys.argv[1]


def eps_of(name):
    with open(f"{out}/{name}/triage.csv") as f:
        return {r["file"]: float(r["min_eps"]) for r in csv.DictReader(f)}


def seconds(name):
    with open(f"{out}/{name}.seconds") as f:
        return [float(line) for line in f if line.strip()]


bisect, fmn = eps_of("bisect"), eps_of("fmn")
tb, tf = seconds("bisect"), seconds("fmn")
no_larger = sum(1 for k in bisect if fmn[k] <= bisect[k])
finite = [k for k in bisect if math.isfinite(bisect[k]) and math.isfinite(fmn[k])]
print(f"images: {len(bisect)}")
print(f"bisection (pgd, 10 iterations per step): {' '.join(f'{t:.1f}' for t in tb)} s")
print(f"fmn (one run):                           {' '.join(f'{t:.1f}' for t in tf)} s")
print(f"speed-up (median times): {statistics.median(tb) / statistics.median(tf):.2f}x")
print(f"fmn's eps no larger than the bisection's: {no_larger} of {len(bisect)} "
      f"({100 * no_larger / len(bisect):.1f}%)")
print(f"mean eps where both found one: bisection {statistics.mean(bisect[k] for k in finite):.5f}, "
      f"fmn {statistics.mean(fmn[k] for k in finite):.5f}")
