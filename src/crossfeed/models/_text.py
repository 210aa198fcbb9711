"""Text models over one input: rows of word ids from crossfeed's own tokenizer and vocabulary.

Every text model of crossfeed takes the same ``X``: a float32 array of shape (n_samples, max_len)
holding word ids (0 pads the end of a row, 1 is an unknown word), built by
:meth:`Vocabulary.encode`. So the large Transformer, the LSTM and TF-IDF with logistic regression
plug into the same combiners, distillers and feedback strategies:

- ``"lstm"`` (:class:`LSTMClassifier`): a bidirectional LSTM over word embeddings.
- ``"sentence_encoder"`` (:class:`~crossfeed.models._sentence_encoder.SentenceEncoderHead`, built
  by :func:`~crossfeed.models._sentence_encoder.sentence_encoder_classifier`): a pretrained
  sentence encoder (MiniLM) that reads the words back from the ids, with a classification head.
- :class:`~crossfeed.models._tfidf.TfidfClassifier`: TF-IDF n-grams of the ids + logistic regression.

The vocabulary maps ids back to words, so a model that needs text (the sentence encoder) gets the
review's tokens, lower-cased and joined by spaces: what an uncased encoder reads anyway.
"""

from __future__ import annotations

import html
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import flop_registry, register_flop_formula

from crossfeed.exceptions import ValidationError
from crossfeed.models._architectures import ARCHITECTURES

__all__ = ["LSTM_SIZES", "PAD", "PAD_ID", "UNK", "UNK_ID", "LSTMClassifier", "Vocabulary", "decode_rows", "tokenize"]

PAD, UNK = "<pad>", "<unk>"
PAD_ID, UNK_ID = 0, 1

# Words (letters and digits, with inner apostrophes: "don't") or single punctuation marks.
_TOKEN = re.compile(r"[^\W_]+(?:'[^\W_]+)*|[^\w\s]")


def tokenize(text: str) -> list[str]:
    """Lower-cased word and punctuation tokens of ``text`` (HTML entities decoded).

    Example
    -------
    >>> tokenize("Don't buy it &quot;new&quot;: it broke!")
    ["don't", 'buy', 'it', '"', 'new', '"', ':', 'it', 'broke', '!']
    """
    return _TOKEN.findall(html.unescape(text).lower().replace("\u2019", "'"))


@dataclass(frozen=True)
class Vocabulary:
    """Words and their ids: ``words[i]`` is the word of id ``i``; id 0 pads, id 1 is unknown.

    Ids only ever grow: :meth:`extend` appends new words and keeps every existing id, so models
    fitted on ids of the old vocabulary stay valid.

    Parameters
    ----------
    words : sequence of str, ``words[0] == "<pad>"`` and ``words[1] == "<unk>"``, no duplicates.

    Example
    -------
    >>> vocab = Vocabulary.build(["a good film", "a bad film"], min_count=1)
    >>> vocab.encode(["a good day"], max_len=4)
    array([[2., 5., 1., 0.]], dtype=float32)
    >>> vocab.decode(vocab.encode(["a good day"], max_len=4))
    ['a good <unk>']
    """

    words: tuple[str, ...] = field(repr=False)
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        words = tuple(str(w) for w in self.words)
        if words[:2] != (PAD, UNK):
            raise ValidationError(f"a vocabulary starts with {PAD!r}, {UNK!r}; got {list(words[:2])}")
        index = {w: i for i, w in enumerate(words)}
        if len(index) != len(words):
            dupes = sorted(w for w, c in Counter(words).items() if c > 1)[:5]
            raise ValidationError(f"vocabulary words must be unique; repeated: {dupes}")
        object.__setattr__(self, "words", words)
        object.__setattr__(self, "_index", index)

    @classmethod
    def build(cls, texts: Iterable[str], *, min_count: int = 1, max_size: int | None = None) -> Vocabulary:
        """Words of ``texts`` seen at least ``min_count`` times, most frequent first (ties alphabetical).

        Parameters
        ----------
        texts : iterable of str, raw texts (tokenized with :func:`tokenize`).
        min_count : int >= 1.
        max_size : int, optional; at most this many ids, the two special ones included.
        """
        if not (isinstance(min_count, int) and min_count >= 1):
            raise ValidationError(f"min_count must be a positive integer; got {min_count!r}")
        if max_size is not None and not (isinstance(max_size, int) and max_size >= 2):
            raise ValidationError(f"max_size must be an integer >= 2 (pad and unknown); got {max_size!r}")
        counts = Counter(tok for text in texts for tok in tokenize(text))
        ranked = [w for w, c in sorted(counts.items(), key=lambda wc: (-wc[1], wc[0])) if c >= min_count]
        ranked = [w for w in ranked if w not in (PAD, UNK)]
        if max_size is not None:
            ranked = ranked[: max_size - 2]
        return cls((PAD, UNK, *ranked))

    def extend(self, texts: Iterable[str]) -> Vocabulary:
        """A vocabulary with the new words of ``texts`` appended (most frequent first); old ids unchanged."""
        counts = Counter(tok for text in texts for tok in tokenize(text) if tok not in self._index)
        new = [w for w, _ in sorted(counts.items(), key=lambda wc: (-wc[1], wc[0]))]
        return Vocabulary(self.words + tuple(new))

    def __len__(self) -> int:
        return len(self.words)

    def __repr__(self) -> str:
        head = ", ".join(repr(w) for w in self.words[2:7])
        return f"Vocabulary({len(self.words)} words: {head}{', ...' if len(self.words) > 7 else ''})"

    def __contains__(self, word: object) -> bool:
        return word in self._index

    def ids(self, text: str) -> list[int]:
        """Ids of the tokens of one text (unknown words get id 1)."""
        get = self._index.get
        return [get(tok, UNK_ID) for tok in tokenize(text)]

    def encode(self, texts: Sequence[str], max_len: int) -> np.ndarray:
        """Rows of word ids, array of shape (n_texts, max_len), float32: truncated, then padded with 0.

        Float32 holds ids exactly up to 2**24 words, far above any vocabulary here.
        """
        if not (isinstance(max_len, int) and max_len >= 1):
            raise ValidationError(f"max_len must be a positive integer; got {max_len!r}")
        if isinstance(texts, str):
            raise ValidationError("texts must be a sequence of strings, not one string; wrap it in a list")
        out = np.zeros((len(texts), max_len), dtype=np.float32)
        for row, text in enumerate(texts):
            ids = self.ids(text)[:max_len]
            out[row, : len(ids)] = ids
        return out

    def decode(self, X: np.ndarray) -> list[str]:
        """The words of each row of ids joined by spaces (padding dropped); ids out of range read as unknown."""
        return decode_rows(X, np.asarray(self.words, dtype=object))


def decode_rows(
    X: np.ndarray | torch.Tensor, words: np.ndarray, unknown: str = UNK, max_tokens: int | None = None
) -> list[str]:
    """Join the words of each row of ``X``: ids, 0 is padding, ids out of range read as ``unknown``.

    ``max_tokens`` keeps only the first words of each row.
    """
    ids = X.detach().cpu().numpy() if isinstance(X, torch.Tensor) else np.asarray(X)
    ids = np.rint(ids.reshape(len(ids), -1)[:, :max_tokens]).astype(np.int64)
    ids[(ids < 0) | (ids >= len(words))] = UNK_ID
    lookup = words.copy()
    lookup[UNK_ID] = unknown
    return [" ".join(lookup[row[row != PAD_ID]]) for row in ids]


def reverse_within_lengths(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse the first ``lengths[i]`` steps of each row ``i`` of ``x`` (batch, steps, ...); padding stays at the end.

    Its own inverse. Example: ``[[1, 2, 3, 0]]`` with length 3 becomes ``[[3, 2, 1, 0]]``.
    """
    steps = torch.arange(x.shape[1], device=x.device)[None, :]
    index = torch.where(steps < lengths[:, None], lengths[:, None] - 1 - steps, steps)
    return x.gather(1, index.view(*index.shape, *([1] * (x.dim() - 2))).expand_as(x))


#: The ladder of LSTMs, from tiny to large (``lstm`` keyword arguments; "lstm:tiny" as a student).
LSTM_SIZES: dict[str, dict[str, int]] = {
    "tiny": {"embedding_dim": 32, "hidden": 32, "num_layers": 1},
    "small": {"embedding_dim": 64, "hidden": 64, "num_layers": 1},
    "medium": {"embedding_dim": 128, "hidden": 128, "num_layers": 1},
    "large": {"embedding_dim": 128, "hidden": 256, "num_layers": 2},
}


@ARCHITECTURES.register("lstm")
class LSTMClassifier(nn.Module):
    """A bidirectional LSTM over word embeddings, mean- and max-pooled over the words, then a head.

    Input of shape (batch, max_len) holds word ids (see :class:`Vocabulary`), padded with id 0 at
    the end of each row. The batch is cut to its longest row; the backward direction reads each
    row's words reversed in place, so no direction ever reads padding before a word and the output
    does not depend on the amount of padding. (This runs as fused LSTM kernels, about 9x faster on
    a CPU than packed sequences.) Ids ``>= vocab_size`` read as unknown (id 1), so a vocabulary
    that grew after training (new words of the test data) is safe.

    Parameters
    ----------
    vocab_size : int, number of ids with an embedding (e.g. the words seen in training).
    size : one of ``LSTM_SIZES`` ("tiny", "small", "medium", "large"); explicit ``embedding_dim``,
        ``hidden`` and ``num_layers`` override it.
    embedding_dim, hidden : widths of the word embeddings and of each LSTM direction.
    num_layers : stacked LSTM layers. bidirectional : read the words in both directions.
    dropout : dropout on the embeddings, between layers and before the head.
    max_tokens : int, optional; read only the first ``max_tokens`` words of each row (the cost of
        an LSTM grows with the longest row of a batch).

    Example
    -------
    >>> net = LSTMClassifier(6, 2, vocab_size=50, embedding_dim=8, hidden=8)
    >>> x = torch.tensor([[5.0, 7.0, 9.0, 0.0, 0.0, 0.0], [3.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    >>> net(x).shape, net.embed(x).shape
    (torch.Size([2, 2]), torch.Size([2, 32]))
    """

    def __init__(
        self,
        n_features: int,
        n_classes: int,
        vocab_size: int = 20000,
        size: str | None = "small",
        embedding_dim: int | None = None,
        hidden: int | None = None,
        num_layers: int | None = None,
        bidirectional: bool = True,
        dropout: float = 0.2,
        max_tokens: int | None = None,
    ) -> None:
        super().__init__()
        if max_tokens is not None and not (isinstance(max_tokens, int) and max_tokens >= 1):
            raise ValidationError(f"max_tokens must be None or a positive integer; got {max_tokens!r}")
        if not (isinstance(vocab_size, int) and vocab_size > UNK_ID):
            raise ValidationError(f"vocab_size must be an integer >= 2 (pad and unknown ids); got {vocab_size!r}")
        if size is not None and size not in LSTM_SIZES:
            raise ValidationError(f"unknown lstm size {size!r}; choose one of {list(LSTM_SIZES)}")
        preset = LSTM_SIZES[size or "small"]
        embedding_dim = int(embedding_dim if embedding_dim is not None else preset["embedding_dim"])
        hidden = int(hidden if hidden is not None else preset["hidden"])
        num_layers = num_layers if num_layers is not None else preset["num_layers"]
        if not (isinstance(num_layers, int) and num_layers >= 1):
            raise ValidationError(f"num_layers must be a positive integer; got {num_layers!r}")
        self.vocab_size = vocab_size
        self.max_tokens = max_tokens
        directions = 2 if bidirectional else 1
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=PAD_ID)
        widths = [embedding_dim] + [directions * hidden] * (num_layers - 1)
        self.forward_layers = nn.ModuleList(nn.LSTM(w, hidden, batch_first=True) for w in widths)
        self.backward_layers = nn.ModuleList(nn.LSTM(w, hidden, batch_first=True) for w in widths) if bidirectional else None
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(2 * directions * hidden, n_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Mean and max of the LSTM outputs over each row's words, shape (batch, 2 * directions * hidden)."""
        ids = x.reshape(len(x), -1)[:, : self.max_tokens].round().long()
        ids = torch.where((ids < 0) | (ids >= self.vocab_size), torch.full_like(ids, UNK_ID), ids)
        lengths = (ids != PAD_ID).sum(dim=1).clamp_min(1)  # an empty row is read as one padding token
        ids = ids[:, : int(lengths.max())]
        h = self.dropout(self.embedding(ids))
        for i, layer in enumerate(self.forward_layers):
            if i:
                h = self.dropout(h)
            out = layer(h)[0]
            if self.backward_layers is not None:
                back = self.backward_layers[i](reverse_within_lengths(h, lengths))[0]
                out = torch.cat([out, reverse_within_lengths(back, lengths)], dim=2)
            h = out
        valid = (torch.arange(ids.shape[1], device=ids.device)[None, :] < lengths[:, None]).unsqueeze(-1)
        mean = (h * valid).sum(dim=1) / lengths[:, None].to(h.dtype)
        peak = h.masked_fill(~valid, float("-inf")).amax(dim=1)
        return torch.cat([mean, peak], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.embed(x)))


def _register_lstm_flops() -> None:
    """Teach ``torch.utils.flop_counter`` the matrix products of oneDNN's LSTM layer on CPU.

    Without a formula, ``FlopCounterMode`` counts nothing for ``aten.mkldnn_rnn_layer`` (the fused
    CPU kernel of ``nn.LSTM``), so :func:`crossfeed.models.flops_per_sample` of an LSTM
    would drop to its head. Each call is one layer in one direction: per step
    ``2 * (4H * I + 4H * H)`` multiply-adds of the input and recurrent weights.
    """
    op = getattr(torch.ops.aten, "mkldnn_rnn_layer", None)
    if op is None or op in flop_registry:
        return

    def rnn_layer_flops(input, weight0, weight1, *args, out_val=None, **kwargs) -> int:
        batch_sizes = args[5] if len(args) > 5 else kwargs.get("batch_sizes")
        steps = int(sum(batch_sizes)) if batch_sizes else int(input.shape[0] * input.shape[1])
        return steps * 2 * (weight0.numel() + weight1.numel())

    register_flop_formula(op, get_raw=True)(rnn_layer_flops)


_register_lstm_flops()


# Registers "sentence_encoder"; that module builds on this one, so it is imported last.
from crossfeed.models import _sentence_encoder  # noqa: F401, E402
