"""Our Conformer-CTC supervised training step against torchaudio.models.Conformer, side by side.

    python tools/bench_peer.py [--models tiny small] [--rounds 10] [--threads N] [--precision fp32|bf16]
                               [--peer-our-dropout] [--step-ratios] [key=value ...]

For each model size (our Hydra configs conf/model/<name>.yaml) one real demo batch is built as
tools/bench_mfu.py builds it (recipe=demo, so the demo's train.max_duration unless overridden), and
two models train on it in this process, each with its own AdamW through the same
`methods.supervised.Supervised.step` (forward with SpecAugment, CTC loss, backward, clipping,
optimiser step):
  ours        bljust.models.asr.AsrModel
  torchaudio  the same front end (our ConvSubsampling, x4, and the dropout after it, weights
              copied from ours) and the same CTC head (copied), with torchaudio.models.Conformer(
              input_dim=d_model, num_heads, ffn_dim=d_model*ff_mult, num_layers,
              depthwise_conv_kernel_size=conv_kernel, dropout) as the encoder. So only the encoder
              differs; the parameter counts are equal (tests/test_tools.py checks within 1 %).
Rounds are interleaved, ABBA (ours then peer, then peer then ours, ...), each preceded by the
matmul peak at the model's GEMM shapes (bljust.tracking.timing, as bench_mfu measures it); in each
round each model runs two steps back to back and the second is timed. Reported per model: median
step time, encoder frames per second (real frames after the x4 subsampling, padding not counted),
FLOPs per step (torch.utils.flop_counter on one forward + backward, each model), MFU against the
best model-shape matmul rate, and ours/peer step time (< 1: ours is faster).

Architectural differences between the two encoders (torchaudio 2.11), and what was matched:
  - positions: ours rotates queries and keys (RoPE) in every attention layer; torchaudio's
    Conformer has no position information at all (no embedding, no relative attention; the paper
    uses relative sinusoidal positions). Not matchable without rewriting its attention; RoPE is
    elementwise work that the FLOP counter does not count.
  - macaron feed-forward: the same in both (half-step FFN, attention, conv, half-step FFN, final
    LayerNorm; pre-norm LayerNorm, SiLU, dropout after the activation and after the output).
  - attention: ours is a fused qkv Linear + F.scaled_dot_product_attention with a bool padding
    mask, batch-major; torchaudio's is nn.MultiheadAttention (packed in-projection, the same
    parameters) on time-major (T, B, D) tensors, its padding mask rebuilt each forward with a
    `.item()` (a host sync on a GPU). Attention-probability dropout in both.
  - conv module: pointwise convs are Linear in ours and Conv1d(kernel 1) in torchaudio (the same
    arithmetic and parameters; the FLOP counter files them under convolution); GLU and a depthwise
    conv of the same kernel in both. The norm after the depthwise conv differs: LayerNorm per
    frame in ours, BatchNorm1d over batch and time in torchaudio (its default; its other option,
    GroupNorm with one group, normalises over time per utterance: neither is ours). Ours zeroes
    padded frames before the depthwise conv; torchaudio lets padding leak into the conv and into
    BatchNorm's statistics.
  - dropout: same rates (model.dropout everywhere). Ours uses models.conformer.Dropout (a
    cheaper mask on the CPU, docs/benchmarks.md); torchaudio's nn.Dropout, as it ships, unless
    --peer-our-dropout swaps ours into it, to separate that from the rest.
BEST-RQ and BL-JUST step times as ratios to our supervised step are tools/bench_steps.py's (its
last line); --step-ratios runs it per model size (its own process and batches) and prints them.
Prints a markdown table plus the command, commit and machine, for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib.metadata
import itertools
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from bljust.cli import compose_config
from bljust.config import ModelConfig
from bljust.data.features import torchaudio_conformer
from bljust.models.asr import AsrModel, count_parameters
from bljust.models.conformer import ConvSubsampling, Dropout, subsampled_lengths
from bljust.tracking.timing import gemm_shapes, matmul_rate, timed


class PeerEncoder(nn.Module):
    """Our front end (x4 conv subsampling, dropout) followed by torchaudio's Conformer blocks."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.subsample = ConvSubsampling(cfg.input_dim, cfg.subsampling_channels, cfg.d_model)
        self.drop = Dropout(cfg.dropout)
        self.conformer = torchaudio_conformer(cfg.d_model, cfg.num_heads, cfg.d_model * cfg.ff_mult,
                                              cfg.num_layers, cfg.conv_kernel, cfg.dropout)

    def forward(self, feats: torch.Tensor, lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, out_lens = self.subsample(feats, lens)
        x, _ = self.conformer(self.drop(x), out_lens)
        return x, out_lens


def build_peer(ours: AsrModel, cfg: ModelConfig, our_dropout: bool = False) -> AsrModel:
    """The peer of `ours`: an AsrModel with PeerEncoder, front end and CTC head copied from ours,
    on its device."""
    peer = AsrModel(cfg, ours.ctc_head.out_features, encoder=PeerEncoder(cfg))
    peer.encoder.subsample.load_state_dict(ours.encoder.subsample.state_dict())
    peer.ctc_head.load_state_dict(ours.ctc_head.state_dict())
    if our_dropout:
        for m in peer.modules():
            if type(m) is nn.Dropout:
                m.__class__ = Dropout
    return peer.to(ours.ctc_head.weight.device)


def commit() -> str:
    here = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=here, capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return rev + (" + uncommitted changes" if dirty else "")


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or platform.machine()


def count_flops(ctx, batch, method) -> int:
    """FLOPs of one forward + backward of the supervised loss (not counted: elementwise work)."""
    from bljust.methods.base import supervised_loss

    with FlopCounterMode(display=False) as counter:
        supervised_loss(ctx, batch).backward()
    method.optimizers["main"].zero_grad(set_to_none=True)
    return counter.get_total_flops()


def bench_model(name: str, args, tmp: Path) -> dict:
    """Time ours and the peer on one real demo batch of model `name`; the figures for its two rows."""
    from bljust.methods.supervised import Supervised
    from bljust.train import Trainer

    run_dir = tmp / name
    cfg = compose_config(["recipe=demo", "method=supervised", f"model={name}", "logging.wandb=disabled",
                          "train.num_workers=0", "train.max_steps=100000", "train.compile=false",
                          f"train.precision={args.precision}", f"run_dir={run_dir}", *args.overrides])
    tr = Trainer(cfg, run_dir)
    ctx, device = tr.ctx, tr.device
    batch = next(tr.labelled).to(device)
    ctx.labelled = itertools.repeat(batch)
    peer = build_peer(tr.model, cfg.model, args.peer_our_dropout)
    peer_ctx = dataclasses.replace(ctx, model=peer)
    methods = {"ours": Supervised(ctx), "torchaudio": Supervised(peer_ctx)}
    ctxs = {"ours": ctx, "torchaudio": peer_ctx}
    steps = {k: (lambda m=m: m.step(0)) for k, m in methods.items()}
    dtype = ctx.compute_dtype

    for _ in range(args.warmup):
        for step in steps.values():
            step()
    flops = {k: count_flops(ctxs[k], batch, methods[k]) for k in methods}
    padded = int(batch.feats.shape[1] + 3) // 4 * len(batch)  # encoder rows per GEMM
    real = int(subsampled_lengths(batch.feat_lens).sum())
    shapes = gemm_shapes(padded, cfg.model.d_model, cfg.model.d_model * cfg.model.ff_mult)
    times: dict[str, list[float]] = {k: [] for k in steps}
    peaks: dict[str, list[float]] = {s: [] for s in shapes}
    for r in range(args.rounds):
        for s, (m, k, n) in shapes.items():
            peaks[s].append(matmul_rate(m, k, n, dtype, device, reps=3))
        for kind in (("ours", "torchaudio") if r % 2 == 0 else ("torchaudio", "ours")):
            steps[kind]()
            times[kind].append(timed(steps[kind], device))
    rates = {s: statistics.median(v) for s, v in peaks.items()}
    peak_name = max(rates, key=rates.get)
    rows = {}
    for kind, model in (("ours", tr.model), ("torchaudio", peer)):
        t = statistics.median(times[kind])
        rows[kind] = {"params": count_parameters(model), "median": t, "min": min(times[kind]),
                      "frames_per_s": real / t, "flops": flops[kind], "mfu": flops[kind] / t / rates[peak_name]}
    return {"rows": rows, "ratio": rows["ours"]["median"] / rows["torchaudio"]["median"], "batch": batch,
            "padded": padded, "real": real, "peak": (peak_name, shapes[peak_name], rates[peak_name]),
            "device": device, "dtype": dtype}


def step_ratios(name: str, args) -> str:
    """bench_steps' ratios of the BEST-RQ and BL-JUST steps to the supervised step, for model `name`."""
    cmd = [sys.executable, str(Path(__file__).with_name("bench_steps.py")), "--rounds", str(args.rounds),
           f"model={name}", *args.overrides]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("to the supervised step:")]
    if proc.returncode or not lines:
        return f"bench_steps failed (exit {proc.returncode}): {proc.stderr.strip()[-300:]}"
    return lines[-1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["tiny", "small"], help="conf/model/ names")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--peer-our-dropout", action="store_true",
                    help="give the peer models.conformer.Dropout instead of nn.Dropout")
    ap.add_argument("--step-ratios", action="store_true",
                    help="also run tools/bench_steps.py per model: BEST-RQ and BL-JUST steps / supervised step")
    ap.add_argument("overrides", nargs="*", help="config overrides, e.g. train.max_duration=20")
    args = ap.parse_intermixed_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        results = {name: bench_model(name, args, Path(tmp)) for name in args.models}

    first = next(iter(results.values()))
    device = first["device"]
    machine = cpu_name() if device.type == "cpu" else torch.cuda.get_device_name(device)
    print("## Training step: ours vs torchaudio.models.Conformer (tools/bench_peer.py)\n")
    print(f"- command: `python tools/bench_peer.py {' '.join(sys.argv[1:])}`".rstrip())
    print(f"- commit: {commit()}; {datetime.date.today().isoformat()}")
    print(f"- machine: {machine} ({platform.machine()}, {platform.system()}), device {device}, "
          f"{torch.get_num_threads()} torch threads; torch {torch.__version__}, "
          f"torchaudio {importlib.metadata.version('torchaudio')}; {args.precision}"
          f"{', peer with our Dropout' if args.peer_our_dropout else ''}")
    for name, res in results.items():
        b = res["batch"]
        s, shape, rate = res["peak"]
        print(f"- {name}: batch {len(b)} utts, {b.seconds:.1f} s audio, {res['real']} encoder frames "
              f"({res['padded']} with padding); matmul peak {rate / 1e9:.1f} GFLOP/s at {s} {shape}; "
              f"{args.rounds} interleaved rounds")
    print()
    print("| model | encoder | params (M) | step median ms (min) | encoder frames/s | GFLOP/step | MFU | ours/peer step time |")
    print("|---|---|---|---|---|---|---|---|")
    for name, res in results.items():
        for kind, row in res["rows"].items():
            ratio = f"**{res['ratio']:.3f}**" if kind == "ours" else "–"
            print(f"| {name} | {kind} | {row['params'] / 1e6:.3f} | {row['median'] * 1000:.1f} ({row['min'] * 1000:.1f}) "
                  f"| {row['frames_per_s']:.0f} | {row['flops'] / 1e9:.2f} | {row['mfu']:.1%} | {ratio} |")
    print()
    for name in results:
        if args.step_ratios:
            print(f"- {name}, tools/bench_steps.py --rounds {args.rounds}: {step_ratios(name, args)}")
        else:
            cmd = " ".join(["python tools/bench_steps.py", "--rounds", str(args.rounds), f"model={name}", *args.overrides])
            print(f"- {name}: BEST-RQ and BL-JUST steps / our supervised step: run `{cmd}` (its last line), "
                  f"or this tool with --step-ratios")


if __name__ == "__main__":
    main()
