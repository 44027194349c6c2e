"""Replays: recorded traces played through the serving loop on a virtual clock, the cost models that
price them, and the headline comparison of policies built on them. No torch."""
