"""Turning CTC logits into text: greedy best path, or beam search with a lexicon and a word
n-gram language model (`beam.py`, flashlight-text's decoder with KenLM). `options.py` holds the
keys `evaluate` and `transcribe` share; `lm.py` builds an ARPA n-gram from text with irstlm."""
