"""Beam-search CTC decoding with a lexicon and a word n-gram LM: flashlight-text's lexicon
decoder (the one torchaudio's `ctc_decoder` wraps) with its bundled KenLM.

The search may only emit lexicon words. Each word is spelled in the model's own tokens with a
leading word boundary ("▁" in SentencePiece), so a boundary must be heard before every word and
two words cannot fuse or split without one. The LM is an ARPA file or a KenLM binary, used as it
is (bljust.decoding.lm builds one with irstlm); the lexicon defaults to the ARPA file's unigrams.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import torch

from bljust.data.tokenizer import BLANK, Tokenizer
from bljust.decoding.options import DecodeOptions
from bljust.errors import UserError

LM_MISSING = "decode=beam needs flashlight-text: pip install bljust[lm]"
KENLM_BINARY_MAGIC = b"mmap lm "
UNK = "<unk>"
LM_SYMBOLS = {"<s>", "</s>", UNK}
BOUNDARY = "\u2581"  # SentencePiece's word-boundary piece


class DecoderError(UserError, ValueError):
    """An LM or lexicon that cannot be used, or the decoder missing; the message names it."""


def _flashlight():
    try:
        from flashlight.lib.text import decoder, dictionary
    except ImportError:
        raise DecoderError(LM_MISSING) from None
    return decoder, dictionary


def _open_text(path: Path):
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")


def arpa_words(path: Path) -> list[str]:
    """The unigrams of an ARPA file (plain or .gz), without <s>, </s> and <unk>, in file order."""
    words, in_unigrams = [], False
    with _open_text(path) as f:
        for line in f:
            line = line.strip()
            if line == "\\1-grams:":
                in_unigrams = True
            elif in_unigrams and (line.startswith("\\") or not line):
                if words or line.startswith("\\"):
                    break
            elif in_unigrams:
                parts = line.split()
                if len(parts) >= 2 and parts[1] not in LM_SYMBOLS:
                    words.append(parts[1])
    if not words:
        raise DecoderError(f"lm={path}: no unigrams found (not an ARPA file?)")
    return words


def is_kenlm_binary(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(len(KENLM_BINARY_MAGIC)) == KENLM_BINARY_MAGIC


def read_lexicon(path: Path, tokenizer: Tokenizer) -> dict[str, list[int]]:
    """WORD [TOKEN ...] per line; a word without tokens is spelled by the tokenizer."""
    if not path.is_file():
        raise DecoderError(f"lexicon={path}: file not found")
    pieces = {tokenizer.sp.id_to_piece(i): i for i in range(tokenizer.vocab_size)}
    lexicon = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        word, *spelling = line.split()
        if not spelling:
            lexicon[word] = tokenizer.encode(word)
            continue
        unknown = [p for p in spelling if p not in pieces]
        if unknown:
            raise DecoderError(f"lexicon={path}:{n}: token {unknown[0]!r} is not in the model's vocabulary")
        lexicon[word] = [pieces[p] for p in spelling]
    return lexicon


def spell(words: list[str], tokenizer: Tokenizer) -> dict[str, list[int]]:
    """Word -> token ids by the model's tokenizer."""
    return {w: tokenizer.encode(w) for w in words}


def usable(lexicon: dict[str, list[int]], tokenizer: Tokenizer) -> dict[str, list[int]]:
    """The entries the model can emit: words whose spelling has no <unk> token (a character the
    tokenizer never saw in training cannot be recognised)."""
    unk = tokenizer.sp.unk_id()
    return {w: ids for w, ids in lexicon.items() if ids and unk not in ids and BLANK not in ids}


class BeamSearchDecoder:
    """(B, T, V) logits and (B,) lengths -> one text per utterance, by lexicon beam search."""

    def __init__(self, tokenizer: Tokenizer, opts: DecodeOptions):
        decoder, dictionary = _flashlight()
        self._fl = decoder
        self.opts = opts
        lm_path = Path(opts.lm) if opts.lm else None
        if lm_path is not None and not lm_path.is_file():
            raise DecoderError(f"lm={lm_path}: file not found")
        if opts.lexicon:
            lexicon = read_lexicon(Path(opts.lexicon), tokenizer)
        elif is_kenlm_binary(lm_path):
            raise DecoderError(f"lm={lm_path} is a KenLM binary, whose words cannot be listed: give lexicon=PATH "
                               "(one word per line)")
        else:
            lexicon = spell(arpa_words(lm_path), tokenizer)
        self.lexicon = usable(lexicon, tokenizer)
        if not self.lexicon:
            raise DecoderError(f"lexicon={opts.lexicon or lm_path}: no word the model's tokenizer can spell")
        self.words = dictionary.Dictionary()
        for word in [UNK, *self.lexicon]:
            self.words.add_entry(word)
        self.words.set_default_index(self.words.get_index(UNK))
        if lm_path is None:
            self.lm = decoder.ZeroLM()
        else:
            try:
                self.lm = decoder.KenLM(str(lm_path), self.words)
            except Exception as err:  # KenLM's own message says what is wrong with the file
                raise DecoderError(f"lm={lm_path}: not a usable ARPA or KenLM binary ({str(err).splitlines()[0]})") from None
        self.vocab_size = tokenizer.vocab_size
        boundary = tokenizer.sp.piece_to_id(BOUNDARY)
        # between words the model may repeat the boundary or stay blank; without a boundary piece
        # (a sub-word vocabulary that folds it into its pieces), blank is the only silence
        self.silence = boundary if tokenizer.sp.id_to_piece(boundary) == BOUNDARY else BLANK
        self.trie = decoder.Trie(self.vocab_size, self.silence)
        start = self.lm.start(False)
        for word, ids in self.lexicon.items():
            idx = self.words.get_index(word)
            self.trie.insert(ids, idx, self.lm.score(start, idx)[1])
        self.trie.smear(decoder.SmearingMode.MAX)
        self.unk = self.words.get_index(UNK)
        self._decoder = self._build(opts.lm_weight, opts.word_score)

    def _build(self, lm_weight: float, word_score: float):
        fl = self._fl
        options = fl.LexiconDecoderOptions(
            beam_size=self.opts.beam_size, beam_size_token=self.vocab_size, beam_threshold=self.opts.beam_threshold,
            lm_weight=lm_weight, word_score=word_score, unk_score=float("-inf"), sil_score=0.0, log_add=False,
            criterion_type=fl.CriterionType.CTC)
        return fl.LexiconDecoder(options, self.trie, self.lm, self.silence, BLANK, self.unk, [], False)

    def set_weights(self, lm_weight: float, word_score: float) -> None:
        """New LM weight and word score, reusing the loaded LM and lexicon (for tuning on dev)."""
        self.opts.lm_weight, self.opts.word_score = lm_weight, word_score
        self._decoder = self._build(lm_weight, word_score)

    def __call__(self, logits: torch.Tensor, lens: torch.Tensor) -> list[str]:
        logp = logits.detach().float().log_softmax(-1).cpu()
        texts = []
        for b, n in enumerate(lens.cpu().tolist()):
            emissions = logp[b, :n].contiguous()
            results = self._decoder.decode(emissions.data_ptr(), n, self.vocab_size)
            words = results[0].words if results else []
            texts.append(" ".join(self.words.get_entry(i) for i in words if i >= 0))
        return texts
