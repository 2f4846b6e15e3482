"""Audio files in, text out: python -m bljust.transcribe ckpt=PATH FILE [FILE ...]

Prints one 'FILE<TAB>TEXT' line per file, in the order given. A file that cannot be read prints
an error line for that file and the others are still transcribed (exit status 1 at the end).
"""

from __future__ import annotations

import sys

import torch

from bljust.data.audio import BadAudio, read_audio
from bljust.data.dataset import pad_batch
from bljust.data.features import fbank
from bljust.evaluate import load_model
from bljust.objectives.ctc import greedy_decode


@torch.no_grad()
def transcribe_files(ckpt: dict, files: list[str], device: torch.device) -> list[tuple[str, str | None, str | None]]:
    """(file, text or None, error or None) per file."""
    model, tokenizer, cmvn, cfg = load_model(ckpt, device)
    feat = cfg["features"]
    out = []
    for path in files:
        try:
            wave = read_audio(path, feat["sample_rate"], feat["max_utt_seconds"])
        except BadAudio as err:
            out.append((path, None, str(err)))
            continue
        x, lens, _, _ = pad_batch([cmvn(fbank(wave, feat["num_mel_bins"], feat["sample_rate"]))], None)
        logits, out_lens = model(x.to(device), lens.to(device))
        out.append((path, tokenizer.decode(greedy_decode(logits.float(), out_lens)[0]), None))
    return out


def main(argv: list[str] | None = None) -> None:
    from bljust.cli import fail, parse_kv
    from bljust.errors import UserError
    from bljust.tracking.checkpoint import load_checkpoint

    try:
        kv, files = parse_kv(sys.argv[1:] if argv is None else argv, {"ckpt", "device"})
        if "ckpt" not in kv or not files:
            raise UserError("usage: python -m bljust.transcribe ckpt=PATH FILE [FILE ...]")
        device = torch.device(kv.get("device", "cuda" if torch.cuda.is_available() else "cpu"))
        results = transcribe_files(load_checkpoint(kv["ckpt"]), files, device)
    except UserError as err:
        fail(err)
    failed = False
    for path, text, error in results:
        if error:
            print(f"error: {error}", file=sys.stderr)
            failed = True
        else:
            print(f"{path}\t{text}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
