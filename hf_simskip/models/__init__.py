"""Model families of hf_simskip, one folder each, laid out as transformers keeps ``models/<name>/``."""
