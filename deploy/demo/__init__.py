"""`make demo`: a simulated population through the real stack, and its funnel report."""
