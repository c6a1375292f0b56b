"""Where a worker's time goes, from a py-spy profile: shares by component, and a plot.

    py-spy record -p <worker pid> -d 30 -r 50 -f raw -o prof.txt --nonblocking
    python bench/profile_summary.py prof.txt --png docs/benchmarks/profile/worker.png

Take the profile while the worker drains a backlog (``bench/stream.py`` starts one). A
sample counts for a component when any of its frames is in it (inclusive share), so the
shares add to more than 100%; the leaf functions with the most own time follow.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

#: (component, path fragment) in the data path's order; the first match names a frame
COMPONENTS = (
    ("validation (stream/validation, wire)", ("stream/validation", "wire/records", "wire/durations")),
    ("windows + features", ("stream/windows", "stream/features")),
    ("LightGBM (risks and TreeSHAP)", ("lightgbm/",)),
    ("hybrid circuits (JAX)", ("models/hybrid", "jax/", "jaxlib")),
    ("online River", ("models/online", "river/")),
    ("alert lifecycle + explanations", ("alerts/",)),
    ("state encode/decode (msgpack)", ("wire/state",)),
    ("outputs + changelog (aiokafka producer)", ("stream/publisher", "aiokafka/producer")),
    ("faust consumer + streams", ("faust/transport", "faust/streams", "aiokafka/consumer")),
    ("event loop + sockets", ("asyncio/selector_events", "selectors.py")),
)


def summarise(path: Path) -> tuple[int, Counter, Counter]:
    total, incl, own = 0, Counter(), Counter()
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        stack, n_text = line.rsplit(" ", 1)
        n = int(n_text)
        total += n
        frames = stack.split(";")
        hit = set()
        for frame in frames:
            for name, fragments in COMPONENTS:
                if any(f in frame for f in fragments):
                    hit.add(name)
                    break
        for name in hit:
            incl[name] += n
        own[frames[-1]] += n
    return total, incl, own


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("profile", type=Path, help="py-spy record -f raw output")
    ap.add_argument("--png", type=Path, default=None)
    args = ap.parse_args()
    total, incl, own = summarise(args.profile)
    print(f"{total:,} samples")
    print("| component | share of samples (inclusive) |\n|---|---|")
    for name, _ in COMPONENTS:
        print(f"| {name} | {incl[name] / total:.1%} |")
    print("\nleaf functions, own time:")
    for frame, n in own.most_common(12):
        print(f"  {n / total:6.1%}  {frame}")
    if args.png is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        names = [n for n, _ in COMPONENTS][::-1]
        fig, ax = plt.subplots(figsize=(8, 4))
        ax.barh(names, [100 * incl[n] / total for n in names], color="#4c72b0")
        ax.set_xlabel("% of the worker's samples (inclusive)")
        ax.set_title(f"One worker draining a backlog: py-spy, {total:,} samples")
        fig.tight_layout()
        args.png.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.png, dpi=110)
        print(f"wrote {args.png}")


if __name__ == "__main__":
    main()
