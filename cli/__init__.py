"""The `hf-laps` command line (click)."""
