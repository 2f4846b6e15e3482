"""Data: manifests, audio, features, tokenizer, batching."""
