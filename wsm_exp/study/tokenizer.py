"""A byte-level BPE tokenizer trained locally with `tokenizers`, in Hugging Face format.

Example:
    >>> tok = train_tokenizer(["hello world", "def f(x): return x"] * 50, vocab_size=300)
    >>> tok.decode(tok("hello world")["input_ids"])
    'hello world'
"""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

EOS = "<|endoftext|>"  # end of text, also BOS and UNK: one special token like GPT-2's
PAD = "<|pad|>"


def train_tokenizer(texts: list[str], vocab_size: int, max_length: int = 128) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE (exact round trip, any text) with EOS/BOS = <|endoftext|>."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, special_tokens=[EOS, PAD],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=EOS, eos_token=EOS, unk_token=EOS, pad_token=PAD)
    hf.model_max_length = max_length
    return hf
