# Benchmark (not a test): vsip vs Kamailio 5.6 vs SIPp-direct under the same SIPp load.
# `make bench` runs the full ladder and writes bench/results/latest.md;
# `make bench-quick` is a short smoke run (table in bench/out/quick.md).
.PHONY: bench bench-quick
bench:
	bash bench/run.sh

bench-quick:
	bash bench/run.sh --quick
