"""`cptkit selftest`: the preflight check of a GPU node (or two) before the first expensive job.

    cptkit selftest                               # this node, all its GPUs (re-runs itself under torchrun)
    cptkit selftest --json runs/selftest.json --recipe recipes/swallowcode_exp1.yaml
    cptkit selftest network                       # the job-start check: is NCCL's EFA/IB plugin loadable?
    cptkit selftest --cpu-dry                     # the same checks on CPU/gloo with tiny shapes (CI)
    cptkit launch selftest --cluster launch/hyperpod.yaml --nodes 2 --submit

Modules: `report` (result rows, table, JSON, exit code), `perf` (MFU, tokens/s, extrapolation to a recipe, NCCL
bus bandwidth), `probe` (versions), `network` (NCCL net plugin), `checks` (the checks each rank runs), `cli`.
"""
