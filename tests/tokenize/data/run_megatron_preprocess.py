"""Run Megatron-LM's own `tools/preprocess_data.py`, unchanged, on a CPU-only machine without triton.

Used once to make the expected digests pinned in tests/tokenize/test_tokenize_megatron_compat.py (see its comment):

    PYTHONPATH=/tmp/mlm .venv/bin/python tests/tokenize/data/run_megatron_preprocess.py \
        /tmp/mlm/tools/preprocess_data.py --input ... --tokenizer-type HuggingFaceTokenizer ...

`megatron.training` imports `megatron.core.transformer.custom_layers.batch_invariant_kernels` (triton GPU kernels)
at import time; preprocess_data.py never calls them, so that one module is replaced by an empty stand-in first.
"""

import runpy
import sys
import types

stub = types.ModuleType("megatron.core.transformer.custom_layers.batch_invariant_kernels")
for name in (
    "set_batch_invariant_mode",
    "is_batch_invariant_mode_enabled",
    "disable_batch_invariant_mode",
    "enable_batch_invariant_mode",
):
    setattr(stub, name, lambda *a, **k: None)
sys.modules[stub.__name__] = stub
script = sys.argv[1]
sys.argv = sys.argv[1:]
runpy.run_path(script, run_name="__main__")
