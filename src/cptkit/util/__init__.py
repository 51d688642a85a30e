"""Small helpers shared by every stage: atomic writes, `${VAR}` expansion, token-count units."""
