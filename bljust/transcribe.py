"""Audio files in, text out: python -m bljust.transcribe ckpt=PATH FILE [FILE ...]

    python -m bljust.transcribe ckpt=PATH a.flac b.wav
    python -m bljust.transcribe ckpt=model.onnx a.flac      (exported by python -m bljust.export)
    python -m bljust.transcribe ckpt=PATH decode=beam lm=lm/3gram.arpa lm_weight=1.5 word_score=1 a.flac

Prints one 'FILE<TAB>TEXT' line per file, in the order given. A file that cannot be read prints
an error line for that file and the others are still transcribed (exit status 1 at the end).
Audio recorded below the model's sample rate (8 kHz telephone audio) is upsampled, unless the
checkpoint was trained with features.low_rate=refuse.
"""

from __future__ import annotations

import sys

import torch

from bljust.data.audio import BadAudio, read_audio
from bljust.data.dataset import pad_batch
from bljust.data.features import Cmvn, fbank
from bljust.decoding.options import DECODE_KEYS, DecodeOptions, make_decoder
from bljust.evaluate import load_for_inference

KEYS = {
    "ckpt": "checkpoint (required), or a model exported by bljust.export (.onnx, run by onnxruntime); "
            "the files follow as plain arguments",
    "device": "cpu | cuda (default: cuda when available)",
    **DECODE_KEYS,
}


def file_features(path: str, cfg: dict, cmvn: Cmvn) -> torch.Tensor:
    """CMVN-normalised fbank (T, D) of one file, as in training; raises BadAudio."""
    feat = cfg["features"]
    wave = read_audio(path, feat["sample_rate"], feat["max_utt_seconds"], feat.get("low_rate", "upsample"))
    return cmvn(fbank(wave, feat["num_mel_bins"], feat["sample_rate"]))


@torch.no_grad()
def transcribe_files(ckpt: str, files: list[str], device: torch.device,
                     opts: DecodeOptions | None = None) -> list[tuple[str, str | None, str | None]]:
    """(file, text or None, error or None) per file; `ckpt` a checkpoint or an exported .onnx model."""
    model, tokenizer, cmvn, cfg = load_for_inference(ckpt, device)
    decode = make_decoder(tokenizer, opts or DecodeOptions())
    out = []
    for path in files:
        try:
            feats = file_features(path, cfg, cmvn)
        except BadAudio as err:
            out.append((path, None, str(err)))
            continue
        x, lens, _, _ = pad_batch([feats], None)
        logits, out_lens = model(x.to(device), lens.to(device))
        out.append((path, decode(logits, out_lens)[0], None))
    return out


def main(argv: list[str] | None = None) -> None:
    from bljust.cli import fail, parse_command
    from bljust.errors import UserError
    try:
        kv, files = parse_command(sys.argv[1:] if argv is None else argv, __doc__, KEYS)
        if "ckpt" not in kv or not files:
            raise UserError("usage: python -m bljust.transcribe ckpt=PATH [decode=beam lm=PATH ...] FILE [FILE ...]"
                            " (--help for the keys)")
        opts = DecodeOptions.from_kv(kv)
        onnx = kv["ckpt"].endswith(".onnx")
        device = torch.device(kv.get("device", "cuda" if torch.cuda.is_available() and not onnx else "cpu"))
        results = transcribe_files(kv["ckpt"], files, device, opts)
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
