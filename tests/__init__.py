"""mmselect's test suite (a package, so `tests.fixtures` imports the same way from tests and benchmarks)."""
