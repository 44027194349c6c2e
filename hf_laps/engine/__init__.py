"""The engine: one speculative round of one request (`speculative.SpeculativeEngine`) or of a batch
(`batched_round.BatchedRound`), its resumable state, drafting and acceptance. Knows nothing of
scheduling: it computes rounds, the serving loop decides which."""
