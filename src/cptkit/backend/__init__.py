"""Process-level plumbing: distributed init (`dist.py`), the CPU shims for tests and the demo (`cpu.py`), and a
helper that runs a function in N gloo processes (`spawn.py`). Never imported by login-node paths."""
