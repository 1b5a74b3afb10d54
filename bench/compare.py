"""Joins the two CSVs of bench/run.sh into a markdown table: medrobust against
the best PyTorch configuration of each row (the ratio), with every
configuration's rate shown, and medrobust's share of the FMA peak bench_engine
measured on the same machine (its "# ceiling" line)."""
import csv
import sys


def load(path):
    with open(path) as f:
        return list(csv.DictReader(line for line in f if not line.startswith("#")))


def ceilings(path):
    """bench_engine's measured ceilings line: {"fma": GFLOP/s, "sgemm": GFLOP/s}"""
    with open(path) as f:
        for line in f:
            if line.startswith("# ceiling"):
                return {k: float(v) for k, v in (w.split("=") for w in line.split()[2:])}
    return {}


def key(r):
    return (r["model"], r["size"], r.get("channels", "1"), r["op"])


peaks = ceilings(sys.argv[1])
FMA_PEAK = peaks.get("fma", 0.0)
ours = {key(r): float(r["images_per_s"]) for r in load(sys.argv[1])}
gflops = {key(r): float(r["gflops"]) for r in load(sys.argv[1]) if r.get("gflops")}
theirs = {}
for r in load(sys.argv[2]):
    theirs.setdefault(key(r), {})[r.get("config", "default")] = float(r["images_per_s"])
if peaks:
    print("Measured ceilings on %d threads: FMA loop %.0f GFLOP/s, OpenBLAS sgemm (n=2048) %.0f "
          "GFLOP/s; %% of peak is of the FMA loop, from nominal FLOPs (padding taps counted)."
          % (peaks.get("threads", 0), peaks.get("fma", 0), peaks.get("sgemm", 0)))
    print()
print("| model | input | operation | medrobust img/s | % of FMA peak | PyTorch default "
      "| channels_last | frozen | best PyTorch | ratio to best |")
print("|---|---|---|---:|---:|---:|---:|---:|---|---:|")
for k, rate in ours.items():
    cfg = theirs.get(k, {})
    best = max(cfg, key=cfg.get) if cfg else None

    def cell(name):
        return "%.0f" % cfg[name] if name in cfg else "-"

    ratio = "%.2f" % (rate / cfg[best]) if best else "-"
    model, size, channels, op = k
    peak = "%.0f%%" % (100 * gflops[k] / FMA_PEAK) if k in gflops and FMA_PEAK else "-"
    print("| %s | %sx%s%s | %s | %.0f | %s | %s | %s | %s | %s | %s |" % (
        model, size, size, "x%s" % channels if channels != "1" else "", op, rate, peak,
        cell("default"), cell("channels_last"), cell("frozen"), best or "-", ratio))
