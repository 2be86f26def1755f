"""Benchmarks. `python -m bench` runs every module here that has a main(); each writes bench/results/<name>.json
and refreshes its row of the table in bench/results/README.md (see bench.results)."""
