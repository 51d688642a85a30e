"""Tokenization stage: raw corpora → Megatron indexed datasets (`cptkit tokenize`, docs/tokenize.md).

Modules, one job each (numpy only, no torch):
    tokenizers  HF tokenizer.json / tiktoken Llama-3 tokenizer.model / sentencepiece behind `load_tokenizer`
    readers     input files (jsonl, jsonl.gz, jsonl.zst, parquet, hf_disk) → deterministic chunks
    worker      one chunk → one shard (.bin/.len/.json), bad records skipped and counted
    pipeline    the run: chunks to a worker pool, resume, scale-out shards
    indexed     Megatron MMIDIDX writer: streaming merge of shards
    finalize    merge + manifest for one prefix
    report      --dry-run plan and the summary table
    cli         `cptkit tokenize`

    from cptkit.tokenize.pipeline import Job, Options, Runner
    with Runner(Options(tokenizer="llama3"), workers=2) as runner:
        runner.run(Job("ja", Path("tok/ja_text_document"), ("raw/ja/*.jsonl.gz",)))
"""
