"""The model description shared by the converter and the trainer.

`ModelConfig` (`config.py`, torch-free) is what `cptkit_model.json` holds in every checkpoint directory;
`build.py` turns it into megatron-core's TransformerConfig and GPTModel.
"""
