#!/usr/bin/env python3
"""Markdown tables from the paper scripts' compare.json files (bench/out/papers),
written to bench/out/papers/tables.md; bench/papers/RESULTS.md quotes them."""
import json
import os
import sys

root = sys.argv[1] if len(sys.argv) > 1 else "bench/out/papers"
lines = []


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def pct(v):
    return "-" if v is None else "%.2f" % (100 * v)


def training(m):
    t = m.get("training")
    if not isinstance(t, dict):
        return "?"
    a = t.get("adversarial")
    if not a:
        return "standard, %d ep" % t.get("epochs", 0)
    return "%s eps %.4g, %d ep, adv share %.3f" % (a["kind"], a["eps"], t.get("epochs", 0),
                                                  a["ratio_effective"])


def sweep_table(c, title):
    models = c["models"]
    cols = [(r["attack"], r["eps"]) for r in models[0]["rows"]]
    lines.append("\n### %s\n" % title)
    lines.append("%s, %s split, %d images.\n" % (c["data"], c["split"], c["n"]))
    lines.append("| model | training | params | clean | " +
                 " | ".join("%s %.4g" % (a, e) for a, e in cols) +
                 " | median min eps | acc. without 20% most fragile |")
    lines.append("|---|---|---:|---:|" + "---:|" * len(cols) + "---:|---:|")
    for m in models:
        acc = {(r["attack"], r["eps"]): r["accuracy"] for r in m["rows"]}
        med = m.get("min_eps_median", "n/a")
        med = "> %g" % c["triage_eps_max"] if med is None else (
            "%.4g" % med if isinstance(med, float) else med)
        lines.append("| %s | %s | %d | %s | %s | %s | %s |" % (
            m["name"], training(m), m["params"], pct(m["clean_accuracy"]),
            " | ".join(pct(acc.get(k)) for k in cols), med, pct(m.get("accuracy_aware"))))
    t = c.get("transfer")
    if t:
        names = [m["name"] for m in models]
        lines.append("\nTransfer, %s %s eps %.4g (rows: crafted on, columns: evaluated on):\n" %
                     (t["attack"], t["norm"], t["eps"]))
        lines.append("| source \\ target | " + " | ".join(names) + " |")
        lines.append("|---|" + "---:|" * len(names))
        for name, row in zip(names, t["accuracy"]):
            lines.append("| %s | %s |" % (name, " | ".join(pct(v) for v in row)))


def seg_tables(c, title):
    names = c["models"]
    lines.append("\n### %s\n" % title)
    lines.append("%s, %d test images; mean Dice.\n" % (c["data"], c["images"]))
    lines.append("| model | params | clean | Rician | DAG average | % drop |")
    lines.append("|---|---:|---:|---:|---:|---:|")
    for m in c["table1"]:
        lines.append("| %s | %d | %.3f | %s | %.3f | %.1f |" % (
            m["model"], m["params"], m["clean"],
            "-" if m.get("rician") is None else "%.3f" % m["rician"],
            m["adversarial_mean"], m["drop_pct"]))
    rows = c["table1"][0]["rows"]
    if rows:
        lines.append("\n| model | " + " | ".join("%s %.4g" % (r["attack"], r["eps"]) for r in rows) + " |")
        lines.append("|---|" + "---:|" * len(rows))
        for m in c["table1"]:
            lines.append("| %s | %s |" % (m["model"], " | ".join("%.3f" % r["dice"] for r in m["rows"])))
    t2 = c.get("table2")
    if t2:
        lines.append("\nTransfer (rows: crafted on, columns: evaluated on; diagonal white-box):\n")
        lines.append("| crafted on | " + " | ".join("%s %s" % (t, n) for t in "ABC" for n in names) + " |")
        lines.append("|---|" + "---:|" * (3 * len(names)))
        for i, n in enumerate(names):
            cells = []
            for t in "ABC":
                cells += ["%.3f" % v for v in t2["type_" + t][i]]
            lines.append("| %s | %s |" % (n, " | ".join(cells)))


for paper in ("p001", "p002", "p004"):
    base = os.path.join(root, paper)
    if not os.path.isdir(base):
        continue
    for name in sorted(os.listdir(base)):
        for sub in ("compare", "standard", "adversarial"):
            c = load(os.path.join(base, name, sub, "compare.json"))
            if c:
                sweep_table(c, "%s: %s (%s)" % (paper, name, sub))
            c = load(os.path.join(base, name, sub, "seg_compare.json"))
            if c:
                seg_tables(c, "%s: %s (%s, segmentation)" % (paper, name, sub))
    times = os.path.join(base, "times.txt")
    if os.path.exists(times):
        lines.append("\n%s wall-clock times (2 threads):\n\n```\n%s```" % (paper, open(times).read()))

out = os.path.join(root, "tables.md")
with open(out + ".tmp", "w") as f:
    f.write("\n".join(lines) + "\n")
os.replace(out + ".tmp", out)
print("wrote", out)
