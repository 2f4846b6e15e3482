"""Build a word n-gram LM for `decode=beam` from text, with irstlm (`apt-get install -y irstlm`).

    python -m bljust.build_lm text=sentences.txt out=lm/3gram.arpa [order=3] [exclude=DEV,TEST]
    python -m bljust.build_lm text=demo out=data/demo/lm/3gram.arpa
    python -m bljust.build_lm text=target out=data/adapt/lm/3gram.arpa

text=FILE is one sentence per line, normalised as transcripts are. text=demo is the demo corpus's
own text source (the fortune sentences it speaks) without the dev and test sentences of any demo
corpus whose dev and test splits are at most 30 minutes long (the bench's are 15), a separate text
corpus as LibriSpeech's LM corpus is. exclude= lists folders (LibriSpeech layout), tables or
CutSets whose transcripts are removed from the text. text=target is the same for the telephone
target domain of recipe=adapt (WordNet text, bljust/data/target_corpus.py). Writes an ARPA file.
"""

from __future__ import annotations

import sys
from pathlib import Path

KEYS = {
    "text": "FILE (one sentence per line), demo (the demo corpus's text source, dev/test held out) or "
            "target (the adapt recipe's WordNet text, dev/test held out)",
    "out": "the ARPA file to write",
    "order": "n-gram order (default 3)",
    "smoothing": "improved-kneser-ney (default) | kneser-ney | witten-bell",
    "exclude": "comma-separated folders, tables or CutSets whose transcripts are removed from the text",
}


def source_lines(text: str) -> list[str]:
    from bljust.decoding.lm import LmBuildError

    if text == "demo":
        from bljust.data.demo_corpus import DemoCorpusSpec, lm_sentences, require_espeak

        require_espeak()  # the same check that names the fortunes package
        return lm_sentences(DemoCorpusSpec())
    if text == "target":
        from bljust.data import target_corpus

        target_corpus.require_flite()  # names the wordnet-base package
        return target_corpus.lm_sentences(target_corpus.TargetCorpusSpec())
    path = Path(text)
    if not path.is_file():
        raise LmBuildError(f"text={path}: file not found")
    return path.read_text(encoding="utf-8", errors="replace").splitlines()


def main(argv: list[str] | None = None) -> None:
    from bljust.cli import fail, parse_command
    from bljust.decoding.lm import LmBuildError, build_arpa, lm_sentences, transcripts_of
    from bljust.errors import UserError

    try:
        kv, rest = parse_command(sys.argv[1:] if argv is None else argv, __doc__, KEYS)
        if rest or "text" not in kv or "out" not in kv:
            raise UserError("usage: python -m bljust.build_lm text=FILE|demo|target out=LM.arpa [order=3] [exclude=...]"
                            " (--help for the keys)")
        try:
            order = int(kv.get("order", "3"))
        except ValueError:
            raise LmBuildError(f"order={kv['order']!r}: expected an integer") from None
        exclude = transcripts_of([Path(e) for e in kv.get("exclude", "").split(",") if e])
        sentences, removed = lm_sentences(source_lines(kv["text"]), exclude)
        out = build_arpa(sentences, Path(kv["out"]), order, kv.get("smoothing", "improved-kneser-ney"))
        words = len({w for s in sentences for w in s.split()})
        print(f"build_lm: {order}-gram on {len(sentences)} sentences, {words} words "
              f"({removed} excluded sentences removed) -> {out}")
    except UserError as err:
        fail(err)


if __name__ == "__main__":
    main()
