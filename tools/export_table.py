"""Write labelled utterances as a plain `audio,text,speaker` CSV, the format `recipe=custom` reads.

    python tools/export_table.py SRC OUT.csv [--minutes 10] [--skip-minutes 0] [--copy-audio]

SRC is a LibriSpeech-layout folder or any manifest (CSV/JSONL table, lhotse CutSet). Utterances are
taken in id order: `--skip-minutes` first, then up to `--minutes`, so disjoint train/dev/test tables
can be cut from one folder. With --copy-audio the files are copied into OUT's folder under audio/
and the table holds paths relative to itself, so the folder can move as a whole (the layout a
company hands over). Used by recipes/custom/run.sh to play "company data" with the demo corpus.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
from pathlib import Path

from bljust.data.manifests import cut_text
from bljust.data.skips import SkipLog
from bljust.data.sources import load_entry
from bljust.errors import UserError


def export_table(src: Path, out: Path, minutes: float = 10.0, skip_minutes: float = 0.0,
                 copy_audio: bool = False) -> int:
    """Write the table; return the number of utterances in it."""
    cuts = sorted(load_entry(src, labelled=True, skips=SkipLog()), key=lambda c: c.id)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows, elapsed = [], 0.0
    for cut in cuts:
        elapsed += cut.duration
        if elapsed <= skip_minutes * 60:
            continue
        if elapsed > (skip_minutes + minutes) * 60:
            break
        audio = Path(cut.recording.sources[0].source)
        if copy_audio:
            (out.parent / "audio").mkdir(exist_ok=True)
            shutil.copy(audio, out.parent / "audio" / audio.name)
            audio = Path("audio") / audio.name
        rows.append({"audio": str(audio), "text": cut_text(cut), "speaker": cut.supervisions[0].speaker or ""})
    if not rows:
        raise UserError(f"{src}: nothing to export between minute {skip_minutes} and {skip_minutes + minutes}")
    with open(out, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["audio", "text", "speaker"])
        writer.writeheader()
        writer.writerows(rows)
    return len(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--skip-minutes", type=float, default=0.0)
    ap.add_argument("--copy-audio", action="store_true")
    args = ap.parse_args()
    try:
        n = export_table(args.src, args.out, args.minutes, args.skip_minutes, args.copy_audio)
    except UserError as err:
        sys.exit(f"error: {err}")
    print(f"{args.out}: {n} utterances")


if __name__ == "__main__":
    main()
