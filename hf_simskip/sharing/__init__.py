"""Sharing a SimSkip model: Hub upload, the model card, the sentence-transformers export."""
