"""Benchmarks that print JSON figures and compare against baselines measured in the
same run (see loadtests/RESULTS.md once they exist)."""
