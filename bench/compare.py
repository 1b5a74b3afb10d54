"""Joins the two CSVs of bench/run.sh into a markdown table: medrobust against
the best PyTorch configuration of each row (the ratio), with every
configuration's rate shown, and medrobust's share of the FMA peak bench_engine
measured on the same machine (its "# ceiling" line), the share of medrobust's time spent in
the convolutions (oneDNN's kernels, which PyTorch calls too) and the ratio medrobust would
reach if everything but the convolutions took no time: the ratio over that share. A row whose
bound is below 1.5 cannot reach issue 16's 1.5x without convolutions faster than oneDNN's.
The last four columns are issue 16's item 2 per row: the share of the sgemm ceiling medrobust's
row would need for 1.5x the best PyTorch; the share its convolutions run at now (the row's
GFLOP/s over its conv share) and the share they would need for 1.5x with everything else taking
the time it takes now ("none" when everything else alone takes longer than 1.5x allows); and
whether the row meets the item: "1.5x", or "ceiling" (within 10% of the sgemm ceiling, at 90% of
it or more), or "no"."""
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


def rate_text(rate):
    """images/s: whole numbers, but a decimal below 100 (the 224x224 rows run at 3-40)"""
    return "%.0f" % rate if rate >= 100 else "%.1f" % rate


def median(values):
    values = sorted(values)
    return values[len(values) // 2]


def medians(rows, column, by):
    """column's median over the rows sharing by(row) (run.sh's rounds), where it is set"""
    seen = {}
    for r in rows:
        if r.get(column):
            seen.setdefault(by(r), []).append(float(r[column]))
    return {k: median(v) for k, v in seen.items()}


peaks = ceilings(sys.argv[1])
FMA_PEAK = peaks.get("fma", 0.0)
SGEMM_PEAK = max(peaks.get("sgemm", 0.0), peaks.get("dnnl_sgemm", 0.0))
rows = load(sys.argv[1])
ours = medians(rows, "images_per_s", key)
# the % of peak counts the multiply-adds whose input is inside the image (padding taps are no
# work, and medrobust skips kernel rows that only meet padding); older CSVs: every tap
gflops = medians(rows, "gflops_inside", key) or medians(rows, "gflops", key)
share = medians(rows, "conv_share", key)
theirs = {}
for (k, config), rate in medians(load(sys.argv[2]), "images_per_s",
                                 lambda r: (key(r), r.get("config", "default"))).items():
    theirs.setdefault(k, {})[config] = rate
if peaks:
    print("Measured ceilings on %d threads: FMA loop %.0f GFLOP/s, sgemm (n=2048) %.0f GFLOP/s "
          "in OpenBLAS and %.0f in oneDNN; %% of peak is of the FMA loop and of the better sgemm, "
          "counting the multiply-adds whose input is inside the image (not padding taps)."
          % (peaks.get("threads", 0), peaks.get("fma", 0), peaks.get("sgemm", 0),
             peaks.get("dnnl_sgemm", 0)))
    print()
print("| model | input | operation | medrobust img/s | % of FMA peak | % of sgemm | PyTorch default "
      "| channels_last | frozen | best PyTorch | ratio to best | conv share | bound "
      "| % of sgemm for 1.5x | convs at % of sgemm | convs need | item 2 |")
print("|---|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---|")
for k, rate in ours.items():
    cfg = theirs.get(k, {})
    best = max(cfg, key=cfg.get) if cfg else None

    def cell(name):
        return rate_text(cfg[name]) if name in cfg else "-"

    ratio = "%.2f" % (rate / cfg[best]) if best else "-"
    conv = "%.0f%%" % (100 * share[k]) if share.get(k) else "-"
    bound = "%.2f" % (rate / cfg[best] / share[k]) if best and share.get(k) else "-"
    model, size, channels, op = k
    peak = "%.0f%%" % (100 * gflops[k] / FMA_PEAK) if k in gflops and FMA_PEAK else "-"
    of_sgemm = gflops[k] / SGEMM_PEAK if k in gflops and SGEMM_PEAK else None
    sgemm = "%.0f%%" % (100 * of_sgemm) if of_sgemm is not None else "-"
    need, item, convs_at, convs_need = "-", "-", "-", "-"
    if best and of_sgemm is not None:
        r = rate / cfg[best]
        need = "%.0f%%" % (100 * of_sgemm * 1.5 / r) if r < 1.5 else "-"
        item = "1.5x" if r >= 1.5 else "ceiling" if of_sgemm >= 0.9 else "no"
        s = share.get(k)
        if s:
            convs_at = "%.0f%%" % (100 * of_sgemm / s)
            # the time 1.5x leaves the convolutions, as a share of today's step: r/1.5 - (1 - s)
            left = r / 1.5 - (1 - s)
            if r < 1.5:
                convs_need = "%.0f%%" % (100 * of_sgemm / left) if left > 0 else "none"
    print("| %s | %sx%s%s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s "
          "| %s |" % (
        model, size, size, "x%s" % channels if channels != "1" else "", op, rate_text(rate),
        peak, sgemm,
        cell("default"), cell("channels_last"), cell("frozen"), best or "-", ratio, conv, bound,
        need, convs_at, convs_need, item))
