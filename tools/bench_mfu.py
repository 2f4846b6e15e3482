"""Model FLOPs utilisation of a supervised training step, against the machine's matmul peak.

    python tools/bench_mfu.py [--rounds 10] [--precision fp32|bf16] [--compile] [--aten-dropout]
                              [--vs-compiled] [--vs-bf16] [key=value ...]

FLOPs per step are counted by torch.utils.flop_counter on one forward + backward of the real
model on a real demo batch (matmuls, convolutions, attention; elementwise work is not counted, as
is usual for MFU). The peak is measured in the same process, interleaved with the steps: torch.matmul
at the model's own GEMM shapes (frames x d_model against the feed-forward and attention weights),
same dtype; the best of those shapes is the peak. A large square matmul is printed for scale
(timed after the rounds: its 48 MB operands would flush the caches the steps use).
MFU = (FLOPs per step / median step time) / peak. --vs-compiled and --vs-bf16 time, in the same
rounds, a copy of the model (same weights, its own AdamW) with its encoder torch.compiled, or with
bf16 autocast (its MFU against the bf16 matmul peak at the same shapes), and print each one's step
time as a ratio to the plain step's. Target: >= 40 % fp32 on the CPU for the demo
model; >= 35 % bf16 on an H100 for the LibriSpeech model (model=large recipe=librispeech_10h).
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from bljust.cli import compose_config
from bljust.tracking.timing import gemm_shapes, matmul_rate, timed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--compile", action="store_true", help="torch.compile the encoder (train.compile)")
    ap.add_argument("--aten-dropout", action="store_true",
                    help="also time steps with ATen's dropout instead of models.conformer.Dropout, interleaved")
    ap.add_argument("--vs-compiled", action="store_true",
                    help="also time a copy of the model with its encoder torch.compiled, interleaved")
    ap.add_argument("--vs-bf16", action="store_true", help="also time a copy of the model under bf16 autocast, interleaved")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_intermixed_args()

    from bljust.methods.supervised import Supervised
    from bljust.train import Trainer

    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose_config(["recipe=demo", "method=supervised", "logging.wandb=disabled", "train.num_workers=0",
                              "train.max_duration=40", "train.max_steps=100000", f"train.precision={args.precision}",
                              f"train.compile={str(args.compile).lower()}", f"run_dir={tmp}", *args.overrides])
        tr = Trainer(cfg, Path(tmp))
        ctx, device = tr.ctx, tr.device
        batch = next(tr.labelled).to(device)
        ctx.labelled = itertools.repeat(batch)
        method = Supervised(ctx)
        dtype = ctx.compute_dtype

        step = lambda: method.step(0)  # noqa: E731  forward, CTC loss, backward, clip, AdamW
        others = other_steps(args, cfg, ctx, Supervised)
        for _ in range(args.warmup):
            step()
            for other in others.values():
                other()  # the compiled copy compiles here, on the first call
        from bljust.methods.base import supervised_loss

        with FlopCounterMode(display=False) as counter:
            supervised_loss(ctx, batch).backward()
        flops = counter.get_total_flops()
        by_op = sorted(((str(op), n) for op, n in counter.get_flop_counts()["Global"].items()),
                       key=lambda x: -x[1])
        method.optimizers["main"].zero_grad(set_to_none=True)

        frames = int(batch.feat_lens.max()) // 4 * len(batch)  # encoder rows per GEMM (40 ms frames)
        shapes = gemm_shapes(frames, cfg.model.d_model, cfg.model.d_model * cfg.model.ff_mult)
        step_times, aten_times, peak_rates = [], [], {name: [] for name in shapes}
        other_times: dict[str, list[float]] = {name: [] for name in others}
        bf16_rates: dict[str, list[float]] = {name: [] for name in shapes}
        from torch import nn

        from bljust.models.conformer import Dropout

        ours = Dropout.forward
        # Interleaved rounds, so machine noise hits steps and peak alike. In each round the step
        # runs twice in a row and the second is timed: training runs steps back to back, and the
        # matmul timings between rounds would otherwise leave the first step cold caches.
        for _ in range(args.rounds):
            for name, (m, k, n) in shapes.items():
                peak_rates[name].append(matmul_rate(m, k, n, dtype, device, reps=3))
                if args.vs_bf16:
                    bf16_rates[name].append(matmul_rate(m, k, n, torch.bfloat16, device, reps=3))
            step()
            step_times.append(timed(step, device))
            for name, other in others.items():
                other()
                other_times[name].append(timed(other, device))
            if args.aten_dropout:
                Dropout.forward = nn.Dropout.forward
                step()
                aten_times.append(timed(step, device))
                Dropout.forward = ours
        square = matmul_rate(2048, 2048, 2048, dtype, device, reps=3)

        t_step = statistics.median(step_times)
        rates = {name: statistics.median(v) for name, v in peak_rates.items()}
        peak_name = max(rates, key=rates.get)
        achieved = flops / t_step
        threads = torch.get_num_threads()
        print(f"device {device} ({threads} threads) | model {cfg.model.name} "
              f"({sum(p.numel() for p in tr.model.parameters()) / 1e6:.2f} M) | {args.precision}"
              f"{' compiled' if args.compile else ''} | batch {len(batch)} utts, {batch.seconds:.1f} s audio, "
              f"{frames} encoder frames | {args.rounds} rounds")
        print(f"FLOPs per training step (fwd+bwd, counted): {flops / 1e9:.2f} GFLOP; top ops: "
              + ", ".join(f"{op.split('.')[1] if '.' in op else op} {n / flops:.0%}" for op, n in by_op[:5]))
        print(f"step: median {t_step * 1000:.1f} ms (min {min(step_times) * 1000:.1f}) -> "
              f"{achieved / 1e9:.1f} GFLOP/s; {batch.seconds / t_step:.1f} s of audio per second")
        for name, r in rates.items():
            print(f"matmul at model shape {name} {shapes[name]}: {r / 1e9:.1f} GFLOP/s")
        print(f"matmul 2048^3 (for scale): {square / 1e9:.1f} GFLOP/s")
        print(f"MFU = {achieved / rates[peak_name]:.1%} of the model-shape peak ({peak_name}); "
              f"{achieved / square:.1%} of the 2048^3 rate")
        for name, times in other_times.items():
            t = statistics.median(times)
            peak = max(statistics.median(v) for v in bf16_rates.values()) if name == "bf16 autocast" else rates[peak_name]
            print(f"{name}: step median {t * 1000:.1f} ms (min {min(times) * 1000:.1f}), MFU {flops / t / peak:.1%}"
                  f"{' of the bf16 model-shape peak' if name == 'bf16 autocast' else ''}; "
                  f"step time / plain step time = {t / t_step:.3f}")
        if aten_times:
            t_aten = statistics.median(aten_times)
            print(f"with ATen's dropout instead: step median {t_aten * 1000:.1f} ms, MFU "
                  f"{flops / t_aten / rates[peak_name]:.1%}; ours is {t_aten / t_step:.2f}x faster")


def other_steps(args, cfg, ctx, supervised) -> dict:
    """The steps of the model copies that --vs-compiled and --vs-bf16 ask for, by name."""
    import copy
    import dataclasses

    steps = {}
    if args.vs_compiled:
        model = copy.deepcopy(ctx.model)
        model.encoder.compile(dynamic=cfg.train.compile_dynamic)  # as train.compile does it
        steps["compiled encoder"] = supervised(dataclasses.replace(ctx, model=model))
    if args.vs_bf16:
        cfg16 = copy.deepcopy(cfg)
        cfg16.train.precision = "bf16"
        steps["bf16 autocast"] = supervised(dataclasses.replace(ctx, model=copy.deepcopy(ctx.model), cfg=cfg16))
    return {name: (lambda m=m: m.step(0)) for name, m in steps.items()}


if __name__ == "__main__":
    main()
