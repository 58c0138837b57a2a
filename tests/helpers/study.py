"""A micro study config: trains in seconds, same code path as the real presets."""

from wsm_exp.study import DataConfig, ModelConfig, TrainConfig

MODEL = ModelConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                    num_key_value_heads=2)
DATA = DataConfig(vocab_size=512, max_chars_general=400_000, max_chars_anneal=200_000, heldout_docs=20)
TRAIN = TrainConfig(seq_len=64, batch_size=4, warmup_steps=4, switch_step=16, branch_steps=16, save_every=4)
