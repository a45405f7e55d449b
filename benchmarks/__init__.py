"""mirrorkit's benchmarks, run by ``scripts/bench`` (its docstring says what each section
measures). Not part of the installed package: they build their archives with the test suite's
builders in ``tests/helpers``."""
