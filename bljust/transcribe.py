"""Audio files in, text out: python -m bljust.transcribe ckpt=PATH FILE [FILE ...]

    python -m bljust.transcribe ckpt=PATH a.flac b.wav
    python -m bljust.transcribe ckpt=model.onnx a.flac      (exported by python -m bljust.export)
    python -m bljust.transcribe ckpt=PATH decode=beam lm=lm/3gram.arpa lm_weight=1.5 word_score=1 a.flac
    python -m bljust.transcribe ckpt=PATH channels=split timestamps=json,srt,ctm out=calls/ call.wav

Prints one 'FILE<TAB>TEXT' line per file (per channel with channels=split: 'FILE:ch0<TAB>TEXT'),
in the order given. A file that cannot be read prints an error line for that file and the others
are still transcribed (exit status 1 at the end). Recordings of any length are read in windows of
`chunk` seconds with `overlap` seconds of context each side (bljust/decoding/chunked.py), so
memory does not grow with the file; a file no longer than `chunk` is one window, decoded whole.
timestamps= writes per-word times from the CTC alignment (greedy decoding) as JSON, SRT and/or
CTM files into out=. Audio recorded below the model's sample rate (8 kHz telephone audio) is
upsampled, unless the checkpoint was trained with features.low_rate=refuse.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf
import torch

from bljust.config import parse_channels
from bljust.data.audio import BadAudio
from bljust.decoding import chunked
from bljust.decoding.options import DECODE_KEYS, DecodeOptions, make_decoder
from bljust.errors import UserError
from bljust.evaluate import load_for_inference

KEYS = {
    "ckpt": "checkpoint (required), or a model exported by bljust.export (.onnx, run by onnxruntime); "
            "the files follow as plain arguments",
    "device": "cpu | cuda (default: cuda when available)",
    "channels": "a file with several channels: mix (average them, default) | split (one transcript per "
                "channel, FILE:ch0, FILE:ch1) | N (that channel, 0 = first)",
    "chunk": "seconds of audio per window (default 20); longer files are read window by window",
    "overlap": "seconds of context on each side of a window, not kept (default 2)",
    "timestamps": "json,srt,ctm (any of them): per-word times written to out= (greedy decoding)",
    "out": "folder for the timestamps files, <file stem>[.ch<K>].<json|srt|ctm> (default: .)",
    **DECODE_KEYS,
}
TIMESTAMP_FORMATS = ("json", "srt", "ctm")


def number(kv: dict[str, str], key: str, default: float, low: float) -> float:
    try:
        value = float(kv.get(key, default))
    except ValueError:
        raise UserError(f"{key}={kv[key]!r}: expected a number of seconds") from None
    if value < low:
        raise UserError(f"{key}={value:g}: must be {'> 0' if low > 0 else '>= 0'} seconds")
    return value


@dataclass
class Transcript:
    """One file's (or one channel's) result: `text` and, when asked for, `words` (chunked.Word);
    `error` instead when the file could not be read."""

    path: str
    channel: int | None  # the channel transcribed alone (channels=split or N); None: the downmix or a mono file
    split: bool  # one of several channels transcribed apart (channels=split): named FILE:chK
    text: str | None = None
    error: str | None = None
    words: list | None = None

    @property
    def name(self) -> str:
        """How the result is printed: the file, or FILE:chK for one channel of a split file."""
        return f"{self.path}:ch{self.channel}" if self.split else self.path


def file_channels(path: str, channels: str | int) -> list[int | None]:
    """The channel selections one file is transcribed under: None is the downmix (or a mono file)."""
    try:
        n = sf.info(path).channels
    except Exception:
        return [None]  # unreadable or missing: the reader names the problem
    if channels == "split" and n > 1:
        return list(range(n))
    return [channels] if isinstance(channels, int) else [None]


@torch.no_grad()
def transcribe_files(ckpt: str, files: list[str], device: torch.device, opts: DecodeOptions | None = None,
                     channels: str | int = "mix", chunk: float = 20.0, overlap: float = 2.0,
                     with_words: bool = False) -> list[Transcript]:
    """One Transcript per file, or per channel of a file under channels=split, in the order given;
    word times when with_words."""
    model, tokenizer, cmvn, cfg = load_for_inference(ckpt, device)
    opts = opts or DecodeOptions()
    decode = make_decoder(tokenizer, opts)
    feat = cfg["features"]
    out = []
    for path in files:
        for channel in file_channels(path, channels):
            result = Transcript(path, channel, split=channels == "split" and channel is not None)
            try:
                pieces = chunked.frames(model, cmvn, feat, path, chunk, overlap, channel, device)
                if opts.decode == "greedy":
                    aligner = chunked.GreedyAligner()
                    for piece in pieces:
                        aligner.push(piece)
                    text = tokenizer.decode([t[0] for t in aligner.tokens])
                    words = aligner.words(tokenizer) if with_words else None
                else:
                    # float16 keeps a long file's frames small; the search itself runs in float32
                    kept = [p.half() for p in pieces]
                    log_probs = torch.cat(kept).float().unsqueeze(0)
                    text = decode(log_probs, torch.tensor([log_probs.shape[1]]))[0]
                    words = None
            except BadAudio as err:
                result.error = str(err)
            else:
                result.text, result.words = text, words
            out.append(result)
    return out


def write_timestamps(result: Transcript, formats: list[str], folder: Path) -> list[Path]:
    """<stem>[.chK].json / .srt / .ctm in `folder` for one transcript (.chK for a split file's channel)."""
    words, stem = result.words or [], Path(result.path).stem
    name = stem + (f".ch{result.channel}" if result.split else "")
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in formats:
        target = folder / f"{name}.{fmt}"
        if fmt == "json":
            body = json.dumps({"audio": result.path, "channel": result.channel, "text": result.text,
                               "words": [{"word": w.text, "start": round(w.start, 3), "end": round(w.end, 3),
                                          "confidence": round(w.confidence, 4)} for w in words]}, indent=1) + "\n"
        elif fmt == "srt":
            body = chunked.srt(words)
        else:
            body = chunked.ctm(words, stem, result.channel + 1 if result.channel is not None else 1)
        target.write_text(body)
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> None:
    from bljust.cli import fail, parse_command
    try:
        kv, files = parse_command(sys.argv[1:] if argv is None else argv, __doc__, KEYS)
        if "ckpt" not in kv or not files:
            raise UserError("usage: python -m bljust.transcribe ckpt=PATH [decode=beam lm=PATH ...] FILE [FILE ...]"
                            " (--help for the keys)")
        opts = DecodeOptions.from_kv(kv)
        channels = parse_channels(kv.get("channels", "mix"), "channels")
        chunk, overlap = number(kv, "chunk", 20.0, 1e-9), number(kv, "overlap", 2.0, 0.0)
        formats = [f for f in kv.get("timestamps", "").split(",") if f]
        if set(formats) - set(TIMESTAMP_FORMATS):
            raise UserError(f"timestamps={kv['timestamps']}: expected any of {','.join(TIMESTAMP_FORMATS)}")
        if formats and opts.decode != "greedy":
            raise UserError("timestamps= needs decode=greedy (word times come from the best path's CTC alignment)")
        onnx = kv["ckpt"].endswith(".onnx")
        device = torch.device(kv.get("device", "cuda" if torch.cuda.is_available() and not onnx else "cpu"))
        results = transcribe_files(kv["ckpt"], files, device, opts, channels, chunk, overlap, bool(formats))
    except UserError as err:
        fail(err)
    failed = False
    for result in results:
        if result.error:
            print(f"error: {result.error}", file=sys.stderr)
            failed = True
            continue
        print(f"{result.name}\t{result.text}")
        if formats:
            write_timestamps(result, formats, Path(kv.get("out", ".")))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
