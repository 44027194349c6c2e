"""Loading the target, the draft and the tokenizer (embedded default, hub ids, local paths)."""
