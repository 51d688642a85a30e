"""`cptkit merge`: task arithmetic / chat vector over Hugging Face folders (see `cptkit.merge.task_arithmetic`)."""
