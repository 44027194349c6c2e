"""Output-length predictors (what a request will cost) and their calibration into distributions."""
