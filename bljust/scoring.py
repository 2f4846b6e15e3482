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
