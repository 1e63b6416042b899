"""Dispatch decisions, free of I/O: parsing commands, what to do with one at send time, the
retry policy, building messages and the outcome events. Time and randomness come in as
arguments."""
