"""A tiny random-weight llama-architecture GGUF for the e2e tier.

No real model can be downloaded in CI, yet the e2e tests need a real llama.cpp server whose
logprobs are real numbers. A 2-layer, 128-wide llama with random weights loads in llama.cpp,
generates quickly and deterministically (at temperature 0), and its logprobs are genuine
softmax outputs; only its text is nonsense.

The vocabulary is SentencePiece-style ("llama" tokenizer model): control tokens, the 256
byte-fallback tokens (so any UTF-8 prompt tokenizes), printable ASCII characters, "▁x" pieces
and a few whole words together with all their prefixes (SentencePiece merges grow one piece at a
time, so every prefix must exist for the whole word to be reachable).

Keeping the output valid UTF-8: a lone byte token such as <0xE2> decodes to an incomplete UTF-8
sequence, and control tokens would end or garble the answer. Residual channel 0 is therefore a
constant "bias channel": every embedding sets it to a positive constant, no layer writes to it,
so after the final RMS norm it is always positive; the output projection reads it with a large
negative weight for unknown, control and byte tokens only. Those tokens get logits far below
every printable one, so the model (practically) only emits printable ASCII pieces, never
`<|im_end|>`, and every answer ends with finish_reason "length".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import gguf
import numpy as np
import numpy.typing as npt

SPACE = "\u2581"  # SentencePiece's word-boundary marker; the detokenizer turns it into " "

# Whole words the model may emit; with their prefixes they take the vocabulary to ~500 tokens.
WORDS = (
    "hello",
    "world",
    "token",
    "trace",
    "span",
    "metric",
    "logprob",
    "model",
    "score",
    "yes",
    "no",
    "the",
    "and",
    "cat",
    "dog",
    "sun",
    "blue",
    "green",
    "ok",
)

# ChatML, as Qwen and many others ship it; llama-cpp-python renders it with Jinja2.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

N_EMBD = 128
N_LAYER = 2
N_HEAD = 4
N_FF = 256
N_CTX = 2048

BIAS_CHANNEL_VALUE = 4.0  # value of residual channel 0 in every embedding
SUPPRESS_WEIGHT = -8.0  # output weight on channel 0 for tokens that must never be emitted

F32 = np.float32
Matrix = npt.NDArray[np.float32]


@dataclass
class Vocab:
    """Token texts, SentencePiece scores and GGUF token types, in id order."""

    tokens: list[str] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    types: list[int] = field(default_factory=list)

    def add(self, text: str, score: float, token_type: gguf.TokenType) -> None:
        # Word prefixes overlap the single pieces ("▁t" is both); keep the first.
        if text in self.tokens:
            return
        self.tokens.append(text)
        self.scores.append(score)
        self.types.append(int(token_type))

    def __len__(self) -> int:
        return len(self.tokens)


# Ids fixed by the order in which build_vocab adds the special tokens.
UNK_ID, BOS_ID, EOS_ID = 0, 1, 4  # EOS is <|im_end|>, so ChatML turns end generation


def build_vocab() -> tuple[Vocab, int]:
    """Return the vocabulary and how many leading tokens must never be generated."""
    vocab = Vocab()
    vocab.add("<unk>", 0.0, gguf.TokenType.UNKNOWN)
    for control in ("<s>", "</s>", "<|im_start|>", "<|im_end|>"):
        vocab.add(control, 0.0, gguf.TokenType.CONTROL)
    for byte in range(256):
        vocab.add(f"<0x{byte:02X}>", 0.0, gguf.TokenType.BYTE)
    n_suppressed = len(vocab)

    vocab.add(SPACE, -1.0, gguf.TokenType.NORMAL)
    for code in range(0x21, 0x7F):  # printable ASCII without the space
        vocab.add(chr(code), -1.0, gguf.TokenType.NORMAL)
    alnum = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    for char in alnum:
        vocab.add(SPACE + char, -0.5, gguf.TokenType.NORMAL)
    for word in WORDS:
        for end in range(2, len(word) + 1):
            # Longer pieces score higher so SentencePiece prefers the whole word.
            vocab.add(SPACE + word[:end], float(end), gguf.TokenType.NORMAL)
    return vocab, n_suppressed


def _normal(rng: np.random.Generator, shape: tuple[int, ...], std: float) -> Matrix:
    return (rng.standard_normal(shape) * std).astype(F32)


def _write_metadata(writer: gguf.GGUFWriter, vocab: Vocab) -> None:
    writer.add_name("logprobscope-tiny-random-llama")
    writer.add_context_length(N_CTX)
    writer.add_embedding_length(N_EMBD)
    writer.add_block_count(N_LAYER)
    writer.add_feed_forward_length(N_FF)
    writer.add_head_count(N_HEAD)
    writer.add_head_count_kv(N_HEAD)
    writer.add_rope_dimension_count(N_EMBD // N_HEAD)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(len(vocab))
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)

    writer.add_tokenizer_model("llama")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(vocab.tokens)
    writer.add_token_scores(vocab.scores)
    writer.add_token_types(vocab.types)
    writer.add_unk_token_id(UNK_ID)
    writer.add_bos_token_id(BOS_ID)
    writer.add_eos_token_id(EOS_ID)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    writer.add_chat_template(CHATML_TEMPLATE)


def _write_block(writer: gguf.GGUFWriter, rng: np.random.Generator, index: int) -> None:
    # numpy shapes are (out, in); gguf stores them reversed, which is what llama.cpp expects.
    prefix = f"blk.{index}"
    scale_in = N_EMBD**-0.5
    writer.add_tensor(f"{prefix}.attn_norm.weight", np.ones(N_EMBD, dtype=F32))
    for name in ("attn_q", "attn_k", "attn_v"):
        writer.add_tensor(f"{prefix}.{name}.weight", _normal(rng, (N_EMBD, N_EMBD), scale_in))
    attn_out = _normal(rng, (N_EMBD, N_EMBD), 0.5 * scale_in)
    attn_out[0, :] = 0.0  # keep the bias channel constant
    writer.add_tensor(f"{prefix}.attn_output.weight", attn_out)

    writer.add_tensor(f"{prefix}.ffn_norm.weight", np.ones(N_EMBD, dtype=F32))
    writer.add_tensor(f"{prefix}.ffn_gate.weight", _normal(rng, (N_FF, N_EMBD), scale_in))
    writer.add_tensor(f"{prefix}.ffn_up.weight", _normal(rng, (N_FF, N_EMBD), scale_in))
    ffn_down = _normal(rng, (N_EMBD, N_FF), 0.5 * N_FF**-0.5)
    ffn_down[0, :] = 0.0  # keep the bias channel constant
    writer.add_tensor(f"{prefix}.ffn_down.weight", ffn_down)


def _write_tensors(
    writer: gguf.GGUFWriter, rng: np.random.Generator, n_vocab: int, n_suppressed: int
) -> None:
    embeddings = _normal(rng, (n_vocab, N_EMBD), 1.0)
    embeddings[:, 0] = BIAS_CHANNEL_VALUE
    writer.add_tensor("token_embd.weight", embeddings)
    for index in range(N_LAYER):
        _write_block(writer, rng, index)
    writer.add_tensor("output_norm.weight", np.ones(N_EMBD, dtype=F32))
    output = _normal(rng, (n_vocab, N_EMBD), 0.25)
    output[:, 0] = 0.0
    output[:n_suppressed, 0] = SUPPRESS_WEIGHT
    writer.add_tensor("output.weight", output)


def write_tiny_gguf(path: Path, *, seed: int = 0) -> Path:
    """Write the tiny model to `path` (byte-identical for the same seed) and return `path`."""
    vocab, n_suppressed = build_vocab()
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(path, "llama")
    try:
        _write_metadata(writer, vocab)
        _write_tensors(writer, rng, len(vocab), n_suppressed)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()
    return path


if __name__ == "__main__":  # handy for poking at the model by hand
    import sys

    target = Path(sys.argv[1] if len(sys.argv) > 1 else "tiny.gguf")
    print(write_tiny_gguf(target))
