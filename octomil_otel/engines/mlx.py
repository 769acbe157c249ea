"""MLX through mlx-lm, for ``octomil serve`` and ``octomil.generate``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing

from octomil_otel.engines.base import ContextLengthExceeded, Engine, Piece, Request
from octomil_otel.generation import Generation

DEFAULT_MAX_TOKENS = 512
PENALTY_LAST_N = 64
"""Tokens the presence and frequency penalties look back over: llama.cpp's default, so the
same request is penalized alike on both engines."""


class MLXEngine(Engine):
    """Args:
    path: the MLX model directory.
    model: the name it is served under.
    """

    name = "mlx"
    options = frozenset(
        {"frequency_penalty", "presence_penalty", "logit_bias", "top_k", "min_p", "repeat_penalty"}
    )

    def __init__(self, path: str, model: str) -> None:
        import mlx_lm

        super().__init__(model)
        self._model, self._tokenizer = mlx_lm.load(path)

    def vocabulary_size(self) -> int:
        """The rows of the model's output: what its logits, and so a bias, index."""
        return int(self._model.args.vocab_size)

    def pieces(self, generation: Generation, request: Request) -> Iterator[Piece]:
        import mlx.core as mx
        import mlx_lm
        from mlx_lm.sample_utils import make_logits_processors, make_sampler

        tokenizer = self._tokenizer
        text = (
            tokenizer.apply_chat_template(
                request.messages, add_generation_prompt=True, tokenize=False
            )
            if request.messages is not None
            else request.prompt or ""
        )
        # as stream_generate encodes a text prompt: special tokens unless it starts with BOS
        bos = tokenizer.bos_token
        prompt = tokenizer.encode(text, add_special_tokens=bos is None or not text.startswith(bos))
        context = getattr(getattr(self._model, "args", None), "max_position_embeddings", None)
        max_tokens = request.max_tokens or DEFAULT_MAX_TOKENS
        if isinstance(context, int):
            if len(prompt) >= context:  # refused before a token: both counts known
                generation.set_usage(input_tokens=len(prompt), output_tokens=0)
                raise ContextLengthExceeded(len(prompt), context)
            max_tokens = min(max_tokens, context - len(prompt))  # as llama.cpp caps it
        if request.seed is not None:  # any int, as llama.cpp takes it: mlx wants a uint64
            mx.random.seed(request.seed % (1 << 64))
        greedy = request.top_p == 0  # only the most likely token; mlx-lm reads 0 as "off"
        sampler = make_sampler(
            temp=0.0 if greedy or request.temperature is None else request.temperature,
            top_p=request.top_p or 0.0,
            min_p=request.min_p or 0.0,
            top_k=request.top_k or 0,
        )
        processors = make_logits_processors(
            logit_bias=request.logit_bias,
            repetition_penalty=request.repeat_penalty,
            repetition_context_size=PENALTY_LAST_N,
            presence_penalty=request.presence_penalty,
            presence_context_size=PENALTY_LAST_N,
            frequency_penalty=request.frequency_penalty,
            frequency_context_size=PENALTY_LAST_N,
        )
        mx.reset_peak_memory()  # one request at a time: its peak is this request's
        responses = generation.call(
            mlx_lm.stream_generate,
            self._model,
            tokenizer,
            prompt,
            max_tokens=max_tokens,
            sampler=sampler,
            logits_processors=processors,
        )
        with closing(responses):
            for response in responses:
                if response.finish_reason is not None:  # the peak since the reset above
                    generation.set_peak_memory(response.peak_memory * 1e9)
                yield Piece(response.text, response.finish_reason)
