"""The trainer: recipe schema (`recipe`, `schema`), planning (`plan`), and the megatron-core training loop.

`cptkit.train.recipe` and `cptkit.train.plan` import neither torch nor megatron-core (the launcher uses them on a login
node); everything else is imported inside `cptkit train`.
"""
