"""Word and character error rates (jiwer), corpus-level: total errors over total reference length."""

from __future__ import annotations

import jiwer


def error_rates(refs: list[str], hyps: list[str]) -> dict[str, float]:
    """{'wer', 'cer'} in percent over the whole list, plus the utterance count.

    Empty references are not scorable and must be filtered out before.
    """
    assert len(refs) == len(hyps) and refs, "need equally many, non-zero references and hypotheses"
    return {
        "wer": 100.0 * jiwer.wer(refs, hyps),
        "cer": 100.0 * jiwer.cer(refs, hyps),
        "utterances": len(refs),
    }


def utterance_edits(refs: list[str], hyps: list[str]) -> dict[str, list[int]]:
    """Per utterance: word and character edits (substitutions + deletions + insertions) and the
    reference's length in words and characters, counted as `error_rates` counts them, so that
    100 * sum(edits) / sum(length) over any subset is that subset's corpus WER or CER."""
    assert len(refs) == len(hyps) and refs, "need equally many, non-zero references and hypotheses"
    words, chars = jiwer.process_words(refs, hyps), jiwer.process_characters(refs, hyps)
    return {"word_edits": [_edits(a) for a in words.alignments], "words": [len(r) for r in words.references],
            "char_edits": [_edits(a) for a in chars.alignments], "chars": [len(r) for r in chars.references]}


def _edits(chunks: list) -> int:
    """Edits in one utterance's alignment: each substituted, deleted or inserted token counts one."""
    return sum(c.hyp_end_idx - c.hyp_start_idx if c.type == "insert" else c.ref_end_idx - c.ref_start_idx
               for c in chunks if c.type != "equal")
