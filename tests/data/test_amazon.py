"""The ``amazon`` text suite: parsing, splits, vocabulary, checksums and clear errors for missing files."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from crossfeed.data import load_suite
from crossfeed.data._amazon import (
    AMAZON_DOMAINS,
    find_amazon,
    load_amazon,
    read_amazon_domain,
)
from crossfeed.exceptions import MissingDataError, ValidationError
from crossfeed.models._text import UNK_ID, tokenize

DATA = Path(os.environ.get("CROSSFEED_AMAZON_DIR") or Path(__file__).resolve().parents[3] / "shared" / "datasets" / "amazon")
needs_data = pytest.mark.skipif(not (DATA / "books" / "positive.review").is_file(),
                                reason=f"the amazon review files are not in {DATA} (set CROSSFEED_AMAZON_DIR)")


@pytest.fixture(scope="module")
def small() -> object:
    return load_amazon(directory=DATA, n_per_domain=60)


@needs_data
def test_four_amazon_domains_of_2000_balanced_reviews():
    for name in ("books", "dvd", "electronics", "kitchen"):
        texts, y = read_amazon_domain(DATA, name)
        assert len(texts) == 2000 and int(y.sum()) == 1000
        assert all(t and "<" not in t[:1] for t in texts)
    texts, y = read_amazon_domain(DATA, "airline")
    assert len(texts) == 2000 and int(y.sum()) == 1068  # the README's 1068 positive / 932 negative


@needs_data
def test_small_suite_has_stratified_splits_of_word_ids(small):
    assert small.names == ["books", "dvd", "electronics", "kitchen"]
    assert small.classes.tolist() == [0, 1] and small.meta["general_domain"] == "books"
    for d in small:
        assert (len(d.X_train), len(d.X_val), len(d.X_test), len(d.X_field)) == (30, 8, 16, 6)
        assert d.X_train.dtype == np.float32 and d.X_train.shape[1] == small.meta["max_len"] == 512
        assert np.array_equal(d.X_train, np.round(d.X_train)) and d.X_train.min() >= 0
        assert set(d.y_test.tolist()) == {0, 1}
        assert len(d.meta["texts"]["train"]) == 30 and len(d.meta["texts"]["field"]) == 6


@needs_data
def test_ids_turn_back_into_the_review_tokens(small):
    vocab = small.meta["vocabulary"]
    d = small["kitchen"]
    decoded = vocab.decode(d.X_test)
    for text, raw in zip(decoded, d.meta["texts"]["test"]):
        assert text.split() == tokenize(raw)[:512]  # lossless up to max_len: every loaded word has an id
    assert UNK_ID not in d.X_test


@needs_data
def test_vocabulary_learns_its_counted_words_from_training_data_only(small):
    vocab, size = small.meta["vocabulary"], small.meta["vocab_size"]
    train_tokens = {tok for d in small for t in d.meta["texts"]["train"] for tok in tokenize(t)}
    assert set(vocab.words[2:size]) <= train_tokens
    test_only = {tok for d in small for t in d.meta["texts"]["test"] for tok in tokenize(t)} - train_tokens
    assert test_only and all(vocab.words.index(w) >= size for w in list(test_only)[:50])


@needs_data
def test_loading_is_deterministic_per_seed():
    a = load_amazon(directory=DATA, n_per_domain=40, domains=["dvd"], general_domain="dvd", seed=1)
    b = load_amazon(directory=DATA, n_per_domain=40, domains=["dvd"], general_domain="dvd", seed=1)
    c = load_amazon(directory=DATA, n_per_domain=40, domains=["dvd"], general_domain="dvd", seed=2)
    assert a["dvd"].meta["texts"] == b["dvd"].meta["texts"]
    np.testing.assert_array_equal(a["dvd"].X_train, b["dvd"].X_train)
    assert a["dvd"].meta["texts"]["train"] != c["dvd"].meta["texts"]["train"]


@needs_data
def test_csv_domains_and_the_suite_registry():
    suite = load_suite("amazon", seed=0, directory=DATA, domains=["airline", "blog"], general_domain="blog",
                       n_per_domain=80, max_len=64)
    assert suite.names == ["airline", "blog"] and suite["blog"].X_test.shape[1] == 64
    assert suite.meta["reference"]["tfidf_lr_5fold"] == {"airline": 85.7, "blog": 98.4}


def test_missing_folder_says_which_files_where_it_looked_and_how_to_get_them(tmp_path):
    with pytest.raises(MissingDataError) as err:
        find_amazon(tmp_path / "nowhere", ["books"])
    message = str(err.value)
    assert "books/positive.review" in message and str(tmp_path / "nowhere") in message
    assert "bzantium/bert-AAD" in message and "directory=" in message
    assert isinstance(err.value, FileNotFoundError)


def test_default_locations_are_listed_when_no_directory_is_given(tmp_path, monkeypatch):
    monkeypatch.setenv("CROSSFEED_AMAZON_DIR", str(tmp_path / "env"))
    monkeypatch.setenv("CROSSFEED_CACHE", str(tmp_path / "cache"))
    with pytest.raises(MissingDataError, match="CROSSFEED_AMAZON_DIR") as err:
        load_amazon(domains=["kitchen"], general_domain="kitchen")
    assert str(tmp_path / "cache" / "amazon") in str(err.value)


@needs_data
def test_a_partial_copy_names_only_the_missing_files(tmp_path):
    shutil.copytree(DATA / "kitchen", tmp_path / "kitchen")
    assert find_amazon(tmp_path, ["kitchen"]) == tmp_path
    with pytest.raises(MissingDataError, match=r"\['dvd/positive.review', 'dvd/negative.review'\]"):
        load_amazon(directory=tmp_path, domains=["kitchen", "dvd"], general_domain="kitchen")


@needs_data
def test_checksums_catch_a_different_copy_unless_told_otherwise(tmp_path):
    shutil.copytree(DATA / "kitchen", tmp_path / "kitchen")
    with open(tmp_path / "kitchen" / "negative.review", "a", encoding="latin-1") as f:
        f.write("\n")
    with pytest.raises(ValidationError, match="MD5.*verify=False"):
        load_amazon(directory=tmp_path, domains=["kitchen"], general_domain="kitchen", n_per_domain=40)
    suite = load_amazon(directory=tmp_path, domains=["kitchen"], general_domain="kitchen", n_per_domain=40, verify=False)
    assert len(suite["kitchen"].X_train) == 20


def test_bad_arguments_list_the_options(tmp_path):
    with pytest.raises(ValidationError, match="available"):
        load_amazon(directory=tmp_path, domains=["garden"])
    with pytest.raises(ValidationError, match="general_domain"):
        load_amazon(directory=tmp_path, domains=["dvd"], general_domain="books")
    with pytest.raises(ValidationError, match="n_per_domain"):
        load_amazon(directory=tmp_path, n_per_domain=4)
    assert set(AMAZON_DOMAINS) == {"books", "dvd", "electronics", "kitchen", "airline", "imdb", "blog"}


def test_malformed_files_fail_with_the_file_name(tmp_path):
    (tmp_path / "books").mkdir()
    for name in ("positive", "negative"):
        (tmp_path / "books" / f"{name}.review").write_text("<review><title>no text</title></review>")
    with pytest.raises(ValidationError, match="positive.review holds no <review_text>"):
        read_amazon_domain(tmp_path, "books")
    (tmp_path / "blog.csv").write_text("text,label\nhello,1\n")
    with pytest.raises(ValidationError, match="reviews,labels"):
        read_amazon_domain(tmp_path, "blog")


def test_docstring_examples_run():
    import doctest

    from crossfeed.data import _amazon

    assert doctest.testmod(_amazon, optionflags=doctest.ELLIPSIS).failed == 0
