"""A tiny random BERT backbone (hidden 32, 2 layers) with a real WordPiece tokenizer, saved to a folder."""
from __future__ import annotations

from pathlib import Path

WORDS = ("the a an is was good bad movie film great terrible plot actor story question what who where "
         "when why how embeddings refine contrastive learning sentence hello world this that and or not").split()


def make_tiny_backbone(path, hidden: int = 32, layers: int = 2, seed: int = 0) -> str:
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = [chr(c) for c in range(ord("a"), ord("z") + 1)] + list(".,!?'-0123456789")
    vocab = specials + WORDS + chars + ["##" + c for c in chars]
    (path / "vocab.txt").write_text("\n".join(dict.fromkeys(vocab)) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast(vocab_file=str(path / "vocab.txt"), do_lower_case=True, model_max_length=64)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=2, intermediate_size=37, max_position_embeddings=64)
    BertModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)
