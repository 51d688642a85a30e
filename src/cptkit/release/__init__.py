"""`cptkit release`: a run's checkpoints → Hugging Face release folders (weights, tokenizer, model card), and upload."""
