"""Draw `cargo xtask bench`'s ratios against their goals: bench.json -> bench.png."""

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(source, target):
    with open(source) as f:
        data = json.load(f)
    # Lines of context have no goal to draw against.
    rows = [r for r in data["rows"] if not r.get("context")]
    labels = [f"{r['number']}. {r['what']}" for r in rows]
    fig, axes = plt.subplots(len(rows), 1, figsize=(10, 1.1 * len(rows) + 1))
    for ax, row, label in zip(axes, rows, labels):
        colour = "tab:green" if row["met"] else "tab:red"
        ax.barh([0], [row["ratio"]], color=colour)
        goal = float("".join(c for c in row["goal"] if c.isdigit() or c == "."))
        ax.axvline(goal, color="black", linestyle="--", linewidth=1)
        ax.set_yticks([])
        ax.set_title(f"{label}  (ratio {row['ratio']:.3g}, goal {row['goal']})", fontsize=8, loc="left")
        ax.tick_params(axis="x", labelsize=7)
    machine = data.get("machine", {})
    fig.suptitle(f"cargo xtask bench — {machine.get('cpus', '?')} CPUs, {machine.get('cpu', '')}", fontsize=9)
    fig.tight_layout()
    fig.savefig(target, dpi=120)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
