"""Word n-gram LMs built from text with irstlm (Debian's `irstlm` package), written as ARPA files
that `decode=beam lm=...` loads with KenLM.

The text is normalised as transcripts are (bljust.data.text), so LM words and hypotheses share
one spelling. Sentences found in the transcripts of `exclude` entries (a recipe's dev and test
splits) are removed first: an LM that has read the test sentences would score itself.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Iterable

from bljust.data.text import Normalizer, normalize_text
from bljust.errors import UserError

IRSTLM_MISSING = "irstlm not found: install it with `apt-get install -y irstlm`"
IRSTLM_DIRS = ("/usr/lib/irstlm/bin",)  # Debian keeps the tools here, behind the `irstlm` front end
SMOOTHING = ("witten-bell", "kneser-ney", "improved-kneser-ney")


class LmBuildError(UserError, RuntimeError):
    """The LM cannot be built: irstlm missing, or text or arguments unusable."""


def irstlm_bin() -> Path:
    """The folder holding build-lm.sh and compile-lm."""
    found = shutil.which("build-lm.sh")
    for folder in ([str(Path(found).parent)] if found else []) + list(IRSTLM_DIRS):
        if (Path(folder) / "build-lm.sh").is_file() and (Path(folder) / "compile-lm").is_file():
            return Path(folder)
    raise LmBuildError(IRSTLM_MISSING)


def transcripts_of(entries: Iterable[Path], normalize: Normalizer = normalize_text) -> set[str]:
    """Every normalised transcript of LibriSpeech-layout folders, tables or CutSets."""
    from bljust.data.manifests import cut_text, is_table_manifest, load_cuts, read_transcripts

    found: set[str] = set()
    for entry in entries:
        if entry.is_dir():
            texts = read_transcripts(entry).values()
        elif entry.is_file():
            if is_table_manifest(entry):
                from bljust.data.manifests import load_table_manifest

                cuts = load_table_manifest(entry, normalize=normalize)
            else:
                cuts = load_cuts(entry)
            texts = [cut_text(c) or "" for c in cuts]
        else:
            raise LmBuildError(f"exclude: {entry} not found")
        found.update(normalize(t) for t in texts)
    found.discard("")
    return found


def lm_sentences(lines: Iterable[str], exclude: set[str], normalize: Normalizer = normalize_text) -> tuple[list[str], int]:
    """Normalised, non-empty sentences not in `exclude`, in order, and how many were removed."""
    kept, removed = [], 0
    for line in lines:
        sentence = normalize(line)
        if not sentence:
            continue
        if sentence in exclude:
            removed += 1
        else:
            kept.append(sentence)
    return kept, removed


def _reason(log: Path, done: subprocess.CompletedProcess) -> str:
    """The line of irstlm's log or output that says what went wrong, with a hint for the usual cause."""
    lines = (log.read_text(errors="replace").splitlines() if log.is_file() else []) + (done.stderr or "").splitlines()
    found = next((ln.strip() for ln in lines if any(k in ln for k in ("Illegal", "rror", "cannot"))), None)
    if found and "division by zero" in found:
        # improved Kneser-Ney estimates its discounts from counts of counts, all zero on a tiny text
        return f"{found} (too little text for this smoothing: try smoothing=witten-bell)"
    return found or f"exit {done.returncode}, no output written"


def build_arpa(sentences: list[str], out: Path, order: int = 3, smoothing: str = "improved-kneser-ney") -> Path:
    """Estimate an `order`-gram LM on `sentences` with irstlm and write it to `out` as ARPA text."""
    if order < 1:
        raise LmBuildError(f"order={order}: must be >= 1")
    if smoothing not in SMOOTHING:
        raise LmBuildError(f"smoothing={smoothing!r}: expected one of {', '.join(SMOOTHING)}")
    if not sentences:
        raise LmBuildError("no sentence left to train the LM on")
    bin_dir = irstlm_bin()
    env = {**os.environ, "IRSTLM": str(bin_dir.parent), "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bljust_lm_") as tmp:
        text = Path(tmp) / "text.txt"
        # irstlm counts sentence boundaries only where the text marks them
        text.write_text("".join(f"<s> {s} </s>\n" for s in sentences), encoding="utf-8")
        log = Path(tmp) / "build-lm.log"
        steps = [([str(bin_dir / "build-lm.sh"), "-i", str(text), "-n", str(order), "-o", f"{tmp}/lm.gz",
                   "-t", f"{tmp}/stat", "-s", smoothing, "-l", str(log)], Path(tmp) / "lm.gz"),
                 ([str(bin_dir / "compile-lm"), "--text=yes", f"{tmp}/lm.gz", f"{tmp}/lm.arpa"], Path(tmp) / "lm.arpa")]
        for cmd, made in steps:
            done = subprocess.run(cmd, env=env, capture_output=True, text=True)
            # build-lm.sh exits 0 even when a stage fails: the missing output and its log tell
            if done.returncode != 0 or not made.is_file():
                raise LmBuildError(f"{Path(cmd[0]).name} failed: {_reason(log, done)}")
        shutil.move(f"{tmp}/lm.arpa", out)
    return out
