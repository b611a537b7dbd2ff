#!/usr/bin/env python3
"""reef's kernels against PyTorch's layers, one model and batch at a time.

Inputs: the JSON of `reef bench models --kernels N --json R` (every kernel
timed alone, RT variant) and of `scripts/torch_bench_models.py --layers
--json T` (each leaf module's kernels, eager, profiler). reef names a fused
kernel after its layers joined by '+', with the module names PyTorch's
models use (`features.25+features.26`: conv and ReLU), so a kernel is
matched with the sum of the modules it names (a module that runs more
than once, such as torchvision ResNet blocks' one ReLU, counts whole
against the first reef kernel that names it). Prints, per model and batch,
the totals, the kernels where reef loses the most time, and the modules
no reef kernel names.

    python3 scripts/layer_compare.py R T [--top 12]
"""
import argparse, json, sys


def compare(reef_row, torch_layers, top):
    left = dict(torch_layers)
    rows = []
    for k in reef_row.get("kernel_profile", []):
        parts = k["name"].split("+")
        matched = [p for p in parts if p in left]
        t = sum(left.pop(p) for p in matched) if matched else None
        rows.append((k, t))
    reef_total = sum(k["us"] for k, _ in rows)
    both = [(k, t) for k, t in rows if t is not None]
    print(f"## {reef_row['model']} batch {reef_row['batch']}\n")
    print(f"- reef: {len(rows)} kernels alone sum to {reef_total / 1e3:.3f} ms; "
          f"{len(both)} of them match PyTorch modules: reef {sum(k['us'] for k, _ in both) / 1e3:.3f} ms "
          f"against PyTorch {sum(t for _, t in both) / 1e3:.3f} ms")
    unmatched = sum(left.values())
    print(f"- PyTorch: {len(torch_layers)} modules sum to {sum(torch_layers.values()) / 1e3:.3f} ms; "
          f"{len(left)} named by no reef kernel take {unmatched / 1e3:.3f} ms")
    by_op = {}
    for k, t in both:
        r, p = by_op.setdefault(k["op"], [0.0, 0.0])
        by_op[k["op"]] = [r + k["us"], p + t]
    print("\n| op | reef us | PyTorch us | reef / PyTorch |\n|---|---|---|---|")
    for op, (r, p) in sorted(by_op.items(), key=lambda x: -x[1][0]):
        print(f"| {op} | {r:.1f} | {p:.1f} | {r / p:.2f} |" if p > 0 else f"| {op} | {r:.1f} | {p:.1f} | - |")
    print(f"\nThe {top} kernels where reef loses the most:\n")
    print("| kernel | op | layers | reef us | PyTorch us | reef - PyTorch |\n|---|---|---|---|---|---|")
    for k, t in sorted(both, key=lambda x: -(x[0]["us"] - x[1]))[:top]:
        print(f"| {k['index']} | {k['op']} | {k['name'][:60]} | {k['us']:.1f} | {t:.1f} | {k['us'] - t:+.1f} |")
    if left:
        names = sorted(left.items(), key=lambda x: -x[1])[:top]
        print("\nPyTorch modules no reef kernel names (slowest): "
              + ", ".join(f"{n} {t:.1f} us" for n, t in names))
    print()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("reef_json")
    ap.add_argument("torch_json")
    ap.add_argument("--top", type=int, default=12)
    a = ap.parse_args()
    reef = json.load(open(a.reef_json))
    torch_rows = {(r["model"], r["batch"]): r.get("layer_us") for r in json.load(open(a.torch_json))}
    done = 0
    for row in reef:
        layers = torch_rows.get((row["model"], row["batch"]))
        if not layers or not row.get("kernel_profile"):
            print(f"{row['model']} batch {row['batch']}: no layer times on one side, skipped", file=sys.stderr)
            continue
        compare(row, layers, a.top)
        done += 1
    if done == 0:
        sys.exit("nothing to compare: run reef with --kernels N and the PyTorch script with --layers")


if __name__ == "__main__":
    main()
