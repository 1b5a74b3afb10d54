"""Joins the two CSVs of bench/run.sh into a markdown table with ratios."""
import csv
import sys


def load(path):
    with open(path) as f:
        return {(r["model"], r["size"], r["op"]): float(r["images_per_s"]) for r in csv.DictReader(f)}


ours, theirs = load(sys.argv[1]), load(sys.argv[2])
print("| model | input | operation | medrobust img/s | PyTorch img/s | ratio |")
print("|---|---|---|---:|---:|---:|")
for key, ours_rate in ours.items():
    t = theirs.get(key)
    ratio = "%.2f" % (ours_rate / t) if t else "-"
    print("| %s | %sx%s | %s | %.0f | %s | %s |" % (key[0], key[1], key[1], key[2], ours_rate,
                                                  "%.0f" % t if t else "-", ratio))
