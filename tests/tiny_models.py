"""Tiny random-weight llama models for tests.

Real checkpoints are hundreds of MB and come from a model hub; these helpers write
llama-architecture models of about half a megabyte in milliseconds, so tests can drive the
real llama-cpp-python and mlx-lm code paths offline and deterministically.

Random weights produce gibberish that could hit EOS at any step, which would make token
counts unpredictable. So hidden dimension 0 is reserved as a constant "bias feature": every
token embedding holds 1.0 there and the attention/MLP output projections never write to it,
so after the final RMSNorm it is positive at every position. Column 0 of the output layer
then acts as a per-token logit bias: hugely negative for EOS, strongly negative for special,
byte and word-fragment tokens, zero for whole words. Greedy decoding therefore never stops
early (``max_tokens`` is always reached) and emits space-separated words from ``WORDS``.
"""

from __future__ import annotations

import json
import pathlib
import string
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from tokenizers import Tokenizer

HIDDEN = 64
LAYERS = 2
HEADS = 4
FFN = 128
CONTEXT = 2048
EOS_BIAS = -1000.0  # far below any other logit: EOS is never generated
NON_WORD_BIAS = -100.0  # special, byte and word-fragment tokens are never picked greedily

WORDS = [
    *("hello", "world", "the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog"),
    *("tiny", "model", "tests", "run", "fast", "local", "token", "stream", "span", "trace"),
    *("metric", "llama", "apple", "green", "blue", "red", "sky", "river", "stone", "light"),
]
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n"
    "{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}"
)


def _output_bias(tokens: list[str], words: set[str], eos_id: int) -> np.ndarray:
    """Per-token logit bias, indexed by token id."""
    bias = np.array([0.0 if t in words else NON_WORD_BIAS for t in tokens], dtype=np.float32)
    bias[eos_id] = EOS_BIAS
    return bias


def _llama_weights(bias: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Random F32 llama weights (Hugging Face names, (out, in) layout)."""
    rng = np.random.default_rng(seed)

    def rand(rows: int, cols: int) -> np.ndarray:
        return (rng.standard_normal((rows, cols)) * cols**-0.5).astype(np.float32)

    ones = np.ones(HIDDEN, dtype=np.float32)
    embed, head = rand(len(bias), HIDDEN) * 8, rand(len(bias), HIDDEN) * 4  # std 1, 0.5
    embed[:, 0], head[:, 0] = 1.0, bias  # the bias feature
    weights = {"model.embed_tokens.weight": embed, "model.norm.weight": ones}
    for i in range(LAYERS):
        layer = {
            "input_layernorm": ones,
            "self_attn.q_proj": rand(HIDDEN, HIDDEN),
            "self_attn.k_proj": rand(HIDDEN, HIDDEN),
            "self_attn.v_proj": rand(HIDDEN, HIDDEN),
            "self_attn.o_proj": rand(HIDDEN, HIDDEN),
            "post_attention_layernorm": ones,
            "mlp.gate_proj": rand(FFN, HIDDEN),
            "mlp.up_proj": rand(FFN, HIDDEN),
            "mlp.down_proj": rand(HIDDEN, FFN),
        }
        layer["self_attn.o_proj"][0] = layer["mlp.down_proj"][0] = 0.0  # dim 0 stays 1.0
        weights.update({f"model.layers.{i}.{name}.weight": w for name, w in layer.items()})
    return weights | {"lm_head.weight": head}


# ---------------------------------------------------------------------------- GGUF

_GGUF_NAMES = {
    "model.embed_tokens": "token_embd",
    "model.norm": "output_norm",
    "lm_head": "output",
    "input_layernorm": "attn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "post_attention_layernorm": "ffn_norm",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}


def _gguf_name(hf_name: str) -> str:
    base = hf_name.removesuffix(".weight")
    if base.startswith("model.layers."):
        i, part = base.removeprefix("model.layers.").split(".", 1)
        return f"blk.{i}.{_GGUF_NAMES[part]}.weight"
    return f"{_GGUF_NAMES[base]}.weight"


def _spm_vocab() -> tuple[list[str], list[int]]:
    """SPM tokens and types: <unk> <s> </s>, 256 byte tokens, then word pieces."""
    from gguf import TokenType

    pieces = dict.fromkeys(["▁", *string.ascii_lowercase])
    for word in WORDS:  # every "▁" prefix, so llama.cpp's bigram merges reach whole words
        pieces.update(dict.fromkeys("▁" + word[:n] for n in range(1, len(word) + 1)))
    tokens = ["<unk>", "<s>", "</s>", *(f"<0x{b:02X}>" for b in range(256)), *pieces]
    types = [TokenType.UNKNOWN, TokenType.CONTROL, TokenType.CONTROL]
    types += [TokenType.BYTE] * 256 + [TokenType.NORMAL] * len(pieces)
    return tokens, [int(t) for t in types]


def write_tiny_gguf(
    path: pathlib.Path, *, seed: int = 0, end_word: str | None = None
) -> pathlib.Path:
    """Write a ~0.5 MB F32 llama GGUF with an SPM vocab and a chat template.

    ``end_word``: declare that word (one of ``WORDS``) the end-of-generation token, so that
    the same weights end an answer on their own where they would have said it.
    """
    import gguf

    tokens, types = _spm_vocab()
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("octomil-tiny-llama")
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_context_length(CONTEXT)
    writer.add_embedding_length(HIDDEN)
    writer.add_block_count(LAYERS)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(HEADS)
    writer.add_rope_dimension_count(HIDDEN // HEADS)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(len(tokens))
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores([-float(len(t)) for t in tokens])  # merge short pieces first
    writer.add_token_types(types)
    writer.add_unk_token_id(0)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2 if end_word is None else tokens.index("▁" + end_word))
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    writer.add_chat_template(CHAT_TEMPLATE)
    bias = _output_bias(tokens, {"▁" + w for w in WORDS}, eos_id=2)
    for name, tensor in _llama_weights(bias, seed).items():
        writer.add_tensor(_gguf_name(name), tensor)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


# ----------------------------------------------------------------------------- MLX


def _train_bpe_tokenizer() -> Tokenizer:
    """A byte-level BPE trained on rotations of WORDS; prepends <s> to every input."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([" ".join(WORDS[i:] + WORDS[:i]) for i in range(len(WORDS))], trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 0)])
    return tok


def write_tiny_mlx_model(
    path: pathlib.Path, *, seed: int = 0, end_word: str | None = None
) -> pathlib.Path:
    """Write a ~0.5 MB mlx-lm llama model directory loadable with ``mlx_lm.load``.

    ``end_word``: as for ``write_tiny_gguf``.
    """
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm.models.llama import Model, ModelArgs

    path.mkdir(parents=True, exist_ok=True)
    tok = _train_bpe_tokenizer()
    tok.save(str(path / "tokenizer.json"))
    vocab = tok.get_vocab()
    eos_id = vocab["</s>"]
    config = {
        "model_type": "llama",
        "hidden_size": HIDDEN,
        "num_hidden_layers": LAYERS,
        "intermediate_size": FFN,
        "num_attention_heads": HEADS,
        "num_key_value_heads": HEADS,
        "rms_norm_eps": 1e-5,
        "vocab_size": len(vocab),
        "max_position_embeddings": CONTEXT,
        "tie_word_embeddings": False,
        "bos_token_id": vocab["<s>"],
        "eos_token_id": eos_id if end_word is None else vocab["Ġ" + end_word],
    }
    (path / "config.json").write_text(json.dumps(config, indent=2))
    tok_config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<s>",
        "eos_token": "</s>",
        "model_max_length": CONTEXT,
        "chat_template": CHAT_TEMPLATE,
    }
    (path / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=2))
    tokens = sorted(vocab, key=vocab.__getitem__)
    bias = _output_bias(tokens, {"Ġ" + w for w in WORDS}, eos_id)
    model = Model(ModelArgs.from_dict(config))
    weights = _llama_weights(bias, seed)
    model.load_weights([(k, mx.array(v)) for k, v in weights.items()])  # strict: checks names
    mx.save_safetensors(str(path / "model.safetensors"), dict(tree_flatten(model.parameters())))
    return path
