"""hf_simskip: SimSkip contrastive refinement of embeddings as a Hugging Face citizen."""
__version__ = "0.1.0"
