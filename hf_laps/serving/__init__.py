"""Serving: the one loop that drives every run (`loop.ServingLoop`), its executors and clocks, and
the Python API on top of it (`generator.LapsGenerator`)."""
