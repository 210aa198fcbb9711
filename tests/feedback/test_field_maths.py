"""The maths of scarce field data (crossfeed.feedback._field): top-up sizes and mixup rows."""

from __future__ import annotations

import numpy as np
import pytest

from crossfeed.exceptions import ValidationError
from crossfeed.feedback._field import augment_field, discrete_columns, mixup_rows, top_up_fields, top_up_sizes


def test_top_up_sizes_reach_the_share_and_never_shrink():
    sizes = top_up_sizes(4000, [50, 200, 1000, 3000], 0.5)
    assert sizes == [1000, 1000, 1000, 3000]
    field = sum(sizes)
    assert field / (field + 4000) >= 0.5
    # plentiful field data (already half of the rows) is left as it is
    assert top_up_sizes(4000, [1000, 1000, 1000, 1000], 0.5) == [1000] * 4
    assert top_up_sizes(4000, [50, 200], 0.0) == [50, 200]
    # share 0.75: three field rows per general row
    assert top_up_sizes(100, [10], 0.75) == [300]
    assert top_up_sizes(100, [], 0.5) == []
    # one domain of four absorbed on its own (a sequence): it gets a quarter, as with the others
    assert top_up_sizes(4000, [1000], 0.5, n_domains=4) == [1000]
    assert top_up_sizes(4000, [50], 0.5, n_domains=4) == [1000]
    with pytest.raises(ValidationError, match="n_domains"):
        top_up_sizes(4000, [50, 50], 0.5, n_domains=1)


@pytest.mark.parametrize("share", [-0.1, 1.0, 1.5])
def test_top_up_sizes_refuse_a_bad_share(share):
    with pytest.raises(ValidationError, match="share"):
        top_up_sizes(100, [10], share)


def test_mixup_rows_are_convex_combinations_of_pairs():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(6, 5)).astype(np.float32)
    out = mixup_rows(X, 200, np.random.default_rng(1))
    assert out.shape == (200, 5) and out.dtype == np.float32
    # every new row lies on the segment between two of the rows: some pair (i, j) and lam in [0, 1]
    for row in out[:20]:
        best = np.inf
        for i in range(6):
            for j in range(6):
                d = X[i] - X[j]
                lam = 1.0 if not d.any() else float(np.clip(np.dot(row - X[j], d) / np.dot(d, d), 0, 1))
                best = min(best, float(np.abs(lam * X[i] + (1 - lam) * X[j] - row).max()))
        assert best < 1e-5
    # inside the rows' bounding box, and mostly new rows (a pair may draw the same row twice: 1 in 6 here)
    assert (out >= X.min(0) - 1e-6).all() and (out <= X.max(0) + 1e-6).all()
    copies = np.mean([any(np.allclose(r, x, atol=1e-4) for x in X) for r in out])
    assert copies < 0.3
    # the same generator state gives the same rows
    assert np.array_equal(out, mixup_rows(X, 200, np.random.default_rng(1)))
    assert mixup_rows(X, 0, rng).shape == (0, 5)


def test_mixup_keeps_discrete_columns_whole():
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 50, size=(8, 3)).astype(np.float32)  # word ids, user ids, one-hot codes
    values = rng.normal(size=(8, 2)).astype(np.float32)
    X = np.concatenate([ids, values], axis=1)
    assert discrete_columns(X).tolist() == [True, True, True, False, False]
    out = mixup_rows(X, 100, np.random.default_rng(2))
    # discrete columns take one parent's values, all together (a row of ids stays a row of one sample)
    for row in out:
        assert any(np.array_equal(row[:3], x) for x in ids)
    assert not np.allclose(out[:, 3:], np.round(out[:, 3:]))


def test_mixup_alpha_concentrates_near_the_parents():
    X = np.array([[0.0], [1.0]], dtype=np.float32) + 0.5  # one continuous column
    rng = np.random.default_rng(0)
    near = mixup_rows(X, 4000, rng, alpha=0.1)
    spread = mixup_rows(X, 4000, np.random.default_rng(0), alpha=1.0)
    middle = lambda a: float(np.mean(np.abs(a - 1.0) < 0.25))  # noqa: E731
    assert middle(near) < middle(spread)


def test_mixup_refuses_bad_input():
    with pytest.raises(ValidationError, match="at least one row"):
        mixup_rows(np.zeros((0, 3)), 2, np.random.default_rng(0))
    with pytest.raises(ValidationError, match="alpha"):
        mixup_rows(np.zeros((2, 3)), 2, np.random.default_rng(0), alpha=0.0)
    with pytest.raises(ValidationError, match="shape"):
        mixup_rows(np.zeros(3), 2, np.random.default_rng(0))


def test_augment_field_keeps_the_given_rows_first():
    X = np.arange(12, dtype=np.float32).reshape(4, 3)
    for how in ("mixup", "repeat"):
        out = augment_field(X, 10, how, np.random.default_rng(0))
        assert out.shape == (10, 3) and np.array_equal(out[:4], X)
    # repeat: whole copies first, then distinct rows for the rest
    out = augment_field(X, 10, "repeat", np.random.default_rng(0))
    assert np.array_equal(out[4:8], X)
    assert len({tuple(r) for r in out[8:]}) == 2
    # nothing to add
    assert np.array_equal(augment_field(X, 3, "mixup", np.random.default_rng(0)), X)
    with pytest.raises(ValidationError, match="mixup"):
        augment_field(X, 10, "noise", np.random.default_rng(0))


def test_top_up_fields_per_domain_and_seeded():
    fields = {"a": np.ones((5, 2), np.float32), "b": np.full((300, 2), 2.0, np.float32)}
    out = top_up_fields(400, fields, 0.5, "mixup", seed=0)
    assert {n: len(v) for n, v in out.items()} == {"a": 200, "b": 300}
    assert np.array_equal(out["b"], fields["b"])
    again = top_up_fields(400, fields, 0.5, "mixup", seed=0)
    assert all(np.array_equal(out[n], again[n]) for n in out)
    assert {n: len(v) for n, v in top_up_fields(400, fields, 0.0, "mixup", seed=0).items()} == {"a": 5, "b": 300}


def test_mixup_top_up_of_whole_number_rows_says_it_only_copies(caplog, monkeypatch):
    import crossfeed.feedback._field as field

    monkeypatch.setattr(field, "_said_mixup_copies", False)
    ids = np.arange(12, dtype=np.float32).reshape(4, 3)
    with caplog.at_level("WARNING", logger="crossfeed.feedback._field"):
        out = augment_field(ids, 10, "mixup", np.random.default_rng(0))
        augment_field(ids, 10, "mixup", np.random.default_rng(1))
    assert {tuple(row) for row in out} <= {tuple(row) for row in ids}  # copies, nothing in between
    assert [r.getMessage() for r in caplog.records].count(caplog.records[0].getMessage()) == 1
    assert "copies a real one" in caplog.records[0].getMessage()
    caplog.clear()
    monkeypatch.setattr(field, "_said_mixup_copies", False)
    with caplog.at_level("WARNING", logger="crossfeed.feedback._field"):
        augment_field(ids + 0.5, 10, "mixup", np.random.default_rng(0))  # continuous: nothing to say
    assert not caplog.records
