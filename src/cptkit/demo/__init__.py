"""`make demo`: the whole workflow on real text, on a CPU, in a few minutes (`python -m cptkit.demo`)."""
