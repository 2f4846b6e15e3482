"""Front-end benchmark: wav2vec2-style waveform CNN (20 ms frames) vs our fbank + x4 subsampling (40 ms).

    python tools/bench_frontend.py [--rounds 5] [--seconds 40] [--device auto] [key=value ...]
                                   (config overrides, e.g. model=small)

Fast-HuBERT's claim: an otherwise identical encoder is far cheaper on filterbanks at 40 ms than
behind wav2vec2's CNN at 20 ms. Both models here are the same Conformer blocks and CTC head
(models/frontends.py); they train on the same real demo batch (~`--seconds` of labelled audio),
one step = forward, CTC loss, backward, AdamW. Our side's time includes computing fbank + CMVN
from the waveforms (reported separately too: training computes it in DataLoader workers). The
variants run interleaved in one process so machine noise hits them alike; figures are ratios of
medians. Memory: bytes of activations saved for backward (machine independent) and, on CUDA, the
step's peak allocation above what was allocated before it. Target: CNN / fbank step >= 3.
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import dataclass
from typing import Callable

import torch
from torch.nn.utils.rnn import pad_sequence

from bljust.cli import compose_config
from bljust.tracking.timing import timed


def saved_activation_bytes(forward_loss: Callable[[], torch.Tensor], params: list[torch.nn.Parameter]) -> int:
    """Bytes of the distinct storages autograd keeps for backward during one forward, parameters excluded."""
    param_ptrs = {p.untyped_storage().data_ptr() for p in params}
    sizes: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        # Several saved tensors may be views of one storage (or the same tensor saved twice): count it once.
        st = t.untyped_storage()
        if st.data_ptr() not in param_ptrs:
            sizes[st.data_ptr()] = max(sizes.get(st.data_ptr(), 0), st.nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        forward_loss()
    return sum(sizes.values())


@dataclass
class RealBatch:
    """The first utterances of the prepared labelled manifest: waveforms and their CTC targets."""

    waves: list[torch.Tensor]  # (samples,) each, at the model's sample rate
    tokens: torch.Tensor  # (B, L) padded with blank
    token_lens: torch.Tensor  # (B,)
    vocab_size: int
    featurise: Callable[[], tuple[torch.Tensor, torch.Tensor]]  # fbank + CMVN + padding: ((B, T, F), (B,))

    def padded_waves(self) -> tuple[torch.Tensor, torch.Tensor]:
        """((B, samples) zero-padded, (B,) sample counts)."""
        return pad_sequence(self.waves, batch_first=True), torch.tensor([len(w) for w in self.waves])


def real_batch(cfg, seconds: float) -> RealBatch:
    """Whole utterances from the start of the labelled manifest until `seconds` of audio."""
    from bljust.data.audio import read_audio
    from bljust.data.dataset import pad_batch
    from bljust.data.features import Cmvn, fbank
    from bljust.data.manifests import cut_text, load_cuts
    from bljust.data.tokenizer import Tokenizer
    from bljust.prepare import prepare

    data = prepare(cfg, verbose=False)  # a no-op when the recipe is prepared already
    tok, cmvn = Tokenizer.load(data.tokenizer), Cmvn.load(data.cmvn)
    sr, mels = cfg.features.sample_rate, cfg.features.num_mel_bins
    waves, texts = [], []
    for cut in load_cuts(data.labelled):
        if sum(len(w) for w in waves) >= seconds * sr:
            break
        waves.append(read_audio(cut.recording.sources[0].source, sr))
        texts.append(cut_text(cut))

    def featurise(tokens: list[list[int]] | None = None) -> tuple[torch.Tensor, ...]:
        # What a DataLoader worker does to the batch.
        return pad_batch([cmvn(fbank(w, mels, sr)) for w in waves], tokens)

    _, _, tokens, token_lens = featurise([tok.encode(t) for t in texts])
    return RealBatch(waves, tokens, token_lens, tok.vocab_size, lambda: featurise()[:2])


def interleaved(kinds: dict[str, Callable[[], None]], rounds: int, warmup: int, device: torch.device
                ) -> tuple[dict[str, list[float]], dict[str, int]]:
    """Seconds of each call per round after `warmup` rounds, and on CUDA each call's largest peak
    allocation above what was allocated when it started (0 elsewhere)."""
    times: dict[str, list[float]] = {k: [] for k in kinds}
    peak = dict.fromkeys(kinds, 0)
    for r in range(warmup + rounds):
        for name in (list(kinds) if r % 2 == 0 else list(reversed(kinds))):  # alternate the order against drift
            if device.type == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
                base = torch.cuda.memory_allocated()
            dt = timed(kinds[name], device)
            if r < warmup:  # first calls allocate optimiser state and warm caches
                continue
            times[name].append(dt)
            if device.type == "cuda":
                peak[name] = max(peak[name], torch.cuda.max_memory_allocated() - base)
    return times, peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=40.0, help="labelled audio in the batch (whole utterances)")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--threads", type=int, default=0,
                    help="CPU threads for torch (0: torch's default); 1 keeps a shared machine's preemptions "
                         "from stalling every multi-threaded op at its barrier")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()

    from bljust.models.asr import AsrModel, count_parameters
    from bljust.models.frontends import waveform_encoder
    from bljust.objectives.ctc import ctc_loss
    from bljust.optim import make_adamw
    from bljust.train import pick_device

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = compose_config(["logging.wandb=disabled", *args.overrides])
    device = pick_device(args.device)
    batch = real_batch(cfg, args.seconds)
    tokens, token_lens = batch.tokens.to(device), batch.token_lens.to(device)
    waves, sample_lens = (t.to(device) for t in batch.padded_waves())
    feats, feat_lens = (t.to(device) for t in batch.featurise())

    torch.manual_seed(0)
    models = {"fbank": AsrModel(cfg.model, batch.vocab_size)}
    torch.manual_seed(0)
    models["cnn"] = AsrModel(cfg.model, batch.vocab_size)
    models["cnn"].encoder = waveform_encoder(cfg.model)  # same blocks and head; the CNN replaces the subsampling
    for m in models.values():
        m.to(device).train()
    opts = {k: make_adamw(m.parameters(), cfg.optim) for k, m in models.items()}
    frames: dict[str, torch.Tensor] = {}

    def loss_of(kind: str) -> torch.Tensor:
        logits, out_lens = models[kind](*((feats, feat_lens) if kind == "fbank" else (waves, sample_lens)))
        frames[kind] = out_lens
        return ctc_loss(logits, out_lens, tokens, token_lens)

    def step(kind: str) -> None:
        loss = loss_of(kind)
        opts[kind].zero_grad(set_to_none=True)
        loss.backward()
        opts[kind].step()

    def features() -> None:  # our side's share of the data pipeline, timed on its own
        nonlocal feats, feat_lens
        feats, feat_lens = (t.to(device) for t in batch.featurise())

    saved = {k: saved_activation_bytes(lambda k=k: loss_of(k), list(m.parameters())) for k, m in models.items()}
    kinds = {"features": features, "fbank": lambda: step("fbank"), "cnn": lambda: step("cnn")}
    times, peak = interleaved(kinds, args.rounds, args.warmup, device)
    med = {k: statistics.median(v) for k, v in times.items()}
    sr = cfg.features.sample_rate
    print(f"device {device} | model {cfg.model.name} | batch {len(batch.waves)} utterances, "
          f"{float(sample_lens.sum()) / sr:.1f} s audio (longest {float(sample_lens.max()) / sr:.1f} s) | "
          f"{args.rounds} interleaved rounds after {args.warmup} warm-up | {torch.get_num_threads()} CPU threads")
    print("  parameters: " + ", ".join(f"{k} model {count_parameters(m):,} (front end "
                                       f"{count_parameters(m.encoder.subsample):,})" for k, m in models.items()))
    print(f"  encoder frames, valid (padded batch): fbank {int(frames['fbank'].sum())} ({feats.shape[0]}x"
          f"{int(frames['fbank'].max())}) at 40 ms from {int(feat_lens.sum())} fbank frames; CNN "
          f"{int(frames['cnn'].sum())} ({waves.shape[0]}x{int(frames['cnn'].max())}) at 20 ms")
    for k, label in (("features", "fbank + CMVN (CPU)"), ("fbank", "fbank encoder step"), ("cnn", "CNN encoder step")):
        print(f"  {label:20s} median {med[k] * 1000:9.1f} ms  (min {min(times[k]) * 1000:.1f}, max {max(times[k]) * 1000:.1f})")
    print(f"  saved activations: fbank {saved['fbank'] / 2**20:.1f} MB, CNN {saved['cnn'] / 2**20:.1f} MB, "
          f"ratio {saved['cnn'] / saved['fbank']:.2f}")
    if device.type == "cuda":
        print(f"  CUDA step peak above its start: fbank {peak['fbank'] / 2**20:.1f} MB, CNN {peak['cnn'] / 2**20:.1f} MB, "
              f"ratio {peak['cnn'] / peak['fbank']:.2f}")
    print(f"CNN step / (fbank + CMVN + fbank step) = {med['cnn'] / (med['features'] + med['fbank']):.2f}  (target >= 3); "
          f"CNN step / fbank step alone = {med['cnn'] / med['fbank']:.2f}")


if __name__ == "__main__":
    main()
