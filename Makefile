.PHONY: demo test bench
demo:
	scripts/demo
test:
	scripts/test
bench:
	scripts/bootstrap
	for b in benchmarks/bench_*.py; do echo "== $$b"; .venv/bin/python $$b || exit 1; done
