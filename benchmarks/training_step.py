#!/usr/bin/env python3
"""Training throughput of the head: samples/s per batch size, alone and beside a busy process.

    python benchmarks/training_step.py [--batches 2048,8192] [--threads 2] [--seconds 8]
        [--width 512] [--blocks 2] [--precision bf16|fp32] [--contention] [--repeats 1]
        [--micro-batches 1,4] [--json OUT.json]

Runs the mapping step as the trainer does (head forward under autocast, ACE's reprojection loss,
AdamW) on random buffer-shaped data, for a fixed wall time per setting, and reports iterations/s,
samples/s and the head's GFLOP/s (forward + backward ~ 3x the forward's matrix work). With
``--contention`` each setting runs again while one other process spins on a core; ``--repeats N``
alternates the two N times and reports the medians (the share of the alone rate: the median of
the N pairs' shares), since one window of a few seconds moves by several points. OpenMP reads its
wait policy when torch loads: the script uses PASSIVE, as the seqace command does (``--omp-default``:
OpenMP's default; OMP_WAIT_POLICY in the environment wins over both). ``--micro-batches N``: the
step as the trainer runs it on a CPU with ``MappingConfig.micro_batches = N`` (N parts on
``--threads`` single-core workers, ``mapping/micro_batches.py``); 1: OpenMP splitting each product.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
for p in (str(HERE), str(REPO)):
    if p not in sys.path:
        sys.path.insert(0, p)


def step_rate(batch: int, width: int, blocks: int, precision: str, seconds: float, micro_batches: int = 1,
              threads: int = 2) -> dict:
    import torch

    from seqace_ros.head import SceneHead
    from seqace_ros.mapping.loss import reprojection_loss
    from seqace_ros.mapping.micro_batches import MicroBatchSteps

    torch.manual_seed(0)
    n = max(batch * 8, 100_000)
    feats = torch.randn(n, 64).to(torch.float16)
    K = torch.tensor([[525.0, 0, 320], [0, 525, 240], [0, 0, 1]]).expand(n, 3, 3)
    w2c = torch.eye(4).expand(n, 4, 4).contiguous()
    targets = torch.rand(n, 2) * torch.tensor([640.0, 480.0])
    head = SceneHead(width=width, num_blocks=blocks, mean=torch.tensor([0.0, 0.0, 2.0]))
    opt = torch.optim.AdamW(head.parameters(), lr=1e-3)
    amp = precision == "bf16"

    def part_loss(idx):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            pts = head(feats[idx] if amp else feats[idx].float())
        return reprojection_loss(pts.float(), w2c[idx], K[idx], targets[idx], 10.0)

    micro = MicroBatchSteps(list(head.parameters()), threads, micro_batches) if micro_batches > 1 else None
    torch.set_num_threads(1 if micro else threads)

    def step(i: int) -> None:
        idx = torch.randint(0, n, (batch,))
        opt.zero_grad(set_to_none=True)
        if micro is not None:
            micro.gradients(part_loss, idx)
        else:
            part_loss(idx)[0].mean().backward()
        opt.step()

    try:
        for i in range(3):
            step(i)
        t0, it = time.perf_counter(), 0
        while time.perf_counter() - t0 < seconds:
            step(it)
            it += 1
        dt = time.perf_counter() - t0
    finally:
        if micro is not None:
            micro.close()
        torch.set_num_threads(threads)
    flops = 3 * 2.0 * batch * (64 * width + (3 * blocks + 2) * width * width + width * 4)
    return {"batch": batch, "micro_batches": micro_batches, "it_per_s": it / dt, "samples_per_s": it * batch / dt,
            "gflops": it * flops / dt / 1e9}


def main() -> int:
    from backends import add_omp_argument, apply_omp_argument

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", default="2048,8192")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--blocks", type=int, default=2)
    ap.add_argument("--precision", default="bf16", choices=["bf16", "fp32"])
    ap.add_argument("--contention", action="store_true")
    ap.add_argument("--repeats", type=int, default=1, help="alone/contended pairs per batch (medians reported)")
    ap.add_argument("--micro-batches", default="1", help="comma-separated part counts (1: OpenMP splits each product)")
    ap.add_argument("--json", type=Path, default=REPO / "results" / "training_step.json")
    add_omp_argument(ap)
    args = ap.parse_args()
    apply_omp_argument(args)

    import torch

    from backends import busy_process
    from seqace_ros.evaluation import write_json

    torch.set_num_threads(args.threads)
    rows = []
    import numpy as np

    def median_row(runs: list[dict]) -> dict:
        return {**runs[0], **{k: float(np.median([r[k] for r in runs])) for k in ("it_per_s", "samples_per_s", "gflops")},
                "runs": len(runs)}

    settings = [(int(b), int(m)) for b in args.batches.split(",") if b.strip()
                for m in args.micro_batches.split(",") if m.strip()]
    for b, m in settings:
        alone, busy = [], []
        for _ in range(max(1, args.repeats)):
            alone.append(step_rate(b, args.width, args.blocks, args.precision, args.seconds, m, args.threads))
            if args.contention:
                with busy_process():
                    busy.append(step_rate(b, args.width, args.blocks, args.precision, args.seconds, m, args.threads))
        row = median_row(alone)
        if busy:
            shares = [c["it_per_s"] / a["it_per_s"] for a, c in zip(alone, busy)]
            row["contention"] = {**median_row(busy), "share_of_alone": float(np.median(shares)),
                                 "shares": shares}
        rows.append(row)
    policy = os.environ.get("OMP_WAIT_POLICY", "(unset)")
    print(f"\nhead width {args.width}, {args.blocks} blocks, {args.precision}, {args.threads} threads, "
          f"OMP_WAIT_POLICY={policy}")
    for r in rows:
        line = (f"batch {r['batch']:6d}, {r['micro_batches']} part(s): {r['it_per_s']:6.1f} it/s {r['samples_per_s'] / 1e3:7.1f} k samples/s "
                f"{r['gflops']:6.1f} GFLOP/s")
        if "contention" in r:
            c = r["contention"]
            line += f" | beside a busy process {c['it_per_s']:6.1f} it/s ({100 * c['share_of_alone']:.0f}%"
            line += f", pairs {' '.join(f'{100 * v:.0f}' for v in c['shares'])})" if len(c["shares"]) > 1 else ")"
        print(line)
    write_json({"threads": args.threads, "omp_wait_policy": policy, "repeats": args.repeats, "precision": args.precision,
                "width": args.width, "blocks": args.blocks, "rows": rows}, args.json)
    print(f"JSON written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
