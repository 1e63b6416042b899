"""Side-by-side benchmarks of the Nurture services (`make bench`); see docs/benchmarks.md."""
