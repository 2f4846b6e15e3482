"""Long recordings through `bljust.transcribe`: real-time factor and peak memory against length.

    python tools/bench_long_audio.py --ckpt runs/.../best.pt --speech data/demo/.../corpus/dev [--minutes 1,10,30]

Each length is a file of real speech from --speech (its audio files end to end, 0.3 s apart,
repeated until long enough), transcribed in a fresh process so that each peak is its own: the
figures are the process's peak resident memory (ru_maxrss) after loading the model and after
transcribing, and the transcription's compute time over the audio's duration (RTF). Memory that
does not grow with the file's length is the point (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

CHILD = r"""
import json, resource, sys, time
import torch
torch.set_num_threads(int(sys.argv[4]))
from bljust.transcribe import transcribe_files
from bljust.evaluate import load_for_inference
load_for_inference(sys.argv[1], torch.device("cpu"))  # imports and weights, outside the timing
loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
[result] = transcribe_files(sys.argv[1], [sys.argv[2]], torch.device("cpu"), chunk=float(sys.argv[3]))
text, err = result.text, result.error
seconds = time.perf_counter() - t0
print(json.dumps({"seconds": seconds, "loaded_mb": loaded / 1024,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "words": len((text or "").split()), "error": err}))
"""


def make_recording(speech_dir: Path, minutes: float, path: Path, rate: int = 16000) -> float:
    """Real speech end to end until `minutes` long, written as 16-bit FLAC; returns its seconds."""
    from bljust.data.audio import read_audio

    files = sorted(p for p in speech_dir.rglob("*") if p.suffix in (".flac", ".wav"))[:200]
    if not files:
        sys.exit(f"--speech {speech_dir}: no .flac or .wav files found")
    gap = np.zeros(int(0.3 * rate), np.float32)
    pieces = [np.concatenate([read_audio(f, rate).numpy(), gap]) for f in files]
    need, out, total = int(minutes * 60 * rate), [], 0
    while total < need:
        for p in pieces:
            out.append(p)
            total += len(p)
            if total >= need:
                break
    with sf.SoundFile(str(path), "w", rate, 1, format="FLAC", subtype="PCM_16") as f:
        for p in out:
            f.write(p)
    return total / rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ckpt", required=True, help="checkpoint to transcribe with")
    ap.add_argument("--speech", required=True, type=Path, help="folder of speech audio to build the recordings from")
    ap.add_argument("--minutes", default="1,10,30", help="recording lengths, comma-separated")
    ap.add_argument("--chunk", type=float, default=20.0, help="transcribe chunk= (seconds per window)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for minutes in [float(m) for m in args.minutes.split(",")]:
            path = Path(tmp) / f"{minutes:g}min.flac"
            seconds = make_recording(args.speech, minutes, path)
            out = subprocess.run([sys.executable, "-c", CHILD, args.ckpt, str(path), str(args.chunk), str(args.threads)],
                                 capture_output=True, text=True)
            if out.returncode != 0:
                sys.exit(f"{minutes:g} min: transcribe failed:\n{out.stderr[-2000:]}")
            r = json.loads(out.stdout.strip().splitlines()[-1])
            if r["error"]:
                sys.exit(f"{minutes:g} min: {r['error']}")
            rows.append((minutes, seconds, r))
            path.unlink()
    print(f"| audio | transcribe time | RTF | peak RSS after model load | peak RSS after transcribing | words |")
    print("|---|---|---|---|---|---|")
    for minutes, seconds, r in rows:
        print(f"| {minutes:g} min | {r['seconds']:.1f} s | {r['seconds'] / seconds:.4f} | {r['loaded_mb']:.0f} MB | "
              f"{r['peak_mb']:.0f} MB | {r['words']} |")


if __name__ == "__main__":
    main()
