"""Joins the two CSVs of bench/run.sh into a markdown table: medrobust against
the best PyTorch configuration of each row (the ratio), with every
configuration's rate shown."""
import csv
import sys


def load(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def key(r):
    return (r["model"], r["size"], r.get("channels", "1"), r["op"])


ours = {key(r): float(r["images_per_s"]) for r in load(sys.argv[1])}
theirs = {}
for r in load(sys.argv[2]):
    theirs.setdefault(key(r), {})[r.get("config", "default")] = float(r["images_per_s"])
print("| model | input | operation | medrobust img/s | PyTorch default | channels_last | frozen "
      "| best PyTorch | ratio to best |")
print("|---|---|---|---:|---:|---:|---:|---|---:|")
for k, rate in ours.items():
    cfg = theirs.get(k, {})
    best = max(cfg, key=cfg.get) if cfg else None

    def cell(name):
        return "%.0f" % cfg[name] if name in cfg else "-"

    ratio = "%.2f" % (rate / cfg[best]) if best else "-"
    model, size, channels, op = k
    print("| %s | %sx%s%s | %s | %.0f | %s | %s | %s | %s | %s |" % (
        model, size, size, "x%s" % channels if channels != "1" else "", op, rate,
        cell("default"), cell("channels_last"), cell("frozen"), best or "-", ratio))
