"""Mixtures of experts: a learned gate routes each domain to its expert; WEMoE mixes task vectors per sample."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from crossfeed.combine import compose_experts, mixture_flops_per_sample, routing_shares, weight_ensemble
from crossfeed.exceptions import LabelMismatchError, ValidationError
from crossfeed.models import (
    GatedMixture,
    TorchClassifier,
    flops_per_sample,
    load_balancing_loss,
    load_model,
    mixture_log_proba,
    save_model,
    top_k_weights,
    warm_fit,
)

MLP = {"hidden": (16,)}


def _domain(rng: np.random.Generator, n: int, which: int) -> tuple[np.ndarray, np.ndarray]:
    """Domain 0 sits at x0 = +3 and its label is x1 > 0; domain 1 at x0 = -3, label x2 > 0."""
    X = rng.normal(size=(n, 6)).astype(np.float32)
    X[:, 0] += 3.0 if which == 0 else -3.0
    y = (X[:, 1 + which] > 0).astype(int)
    return X, y


@pytest.fixture(scope="module")
def domains() -> dict[str, dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    out = {}
    for which, name in enumerate(["a", "b"]):
        parts = {split: _domain(rng, n, which) for split, n in [("train", 300), ("val", 150), ("test", 300)]}
        out[name] = {f"{k}_{split}": v for split, (X, y) in parts.items() for k, v in zip("Xy", (X, y))}
    return out


def _mlp(seed: int) -> TorchClassifier:
    return TorchClassifier("mlp", module_kwargs=MLP, epochs=40, lr=1e-2, random_state=seed, threads=1)


@pytest.fixture(scope="module")
def experts(domains) -> dict[str, TorchClassifier]:
    return {name: _mlp(i).fit(d["X_train"], d["y_train"]) for i, (name, d) in enumerate(domains.items())}


def _acc(model, d) -> float:
    return float(np.mean(model.predict(d["X_test"]) == d["y_test"]))


def _gate_data(domains):
    return {"X": np.concatenate([d["X_val"] for d in domains.values()]),
            "y": np.concatenate([d["y_val"] for d in domains.values()])}


def test_the_gate_sends_each_domain_to_its_expert(domains, experts):
    moe = compose_experts(experts, **_gate_data(domains), epochs=30, random_state=0)
    untrained = compose_experts(experts, **_gate_data(domains), epochs=1, lr=1e-9, random_state=0)
    for name, d in domains.items():
        own = _acc(experts[name], d)
        other = _acc(experts["b" if name == "a" else "a"], d)
        assert own > other + 0.3  # each expert is only good on its own domain
        assert _acc(moe, d) >= own - 0.01
    # the no-op (a gate that did not learn) routes half the samples to the wrong expert
    assert min(_acc(untrained, d) for d in domains.values()) < min(_acc(moe, d) for d in domains.values()) - 0.15
    shares = routing_shares(moe, domains["a"]["X_test"])
    assert shares["a"] > 0.95 and set(shares) == {"a", "b"}


def test_domain_routing_alone_trains_the_gate_on_unlabelled_rows(domains, experts):
    X = np.concatenate([domains["a"]["X_val"], domains["b"]["X_val"]])
    to = ["a"] * len(domains["a"]["X_val"]) + ["b"] * len(domains["b"]["X_val"])
    moe = compose_experts(experts, X_routed=X, routed_to=to, epochs=30, random_state=0)
    assert routing_shares(moe, domains["b"]["X_test"])["b"] > 0.95
    assert all(_acc(moe, d) >= _acc(experts[n], d) - 0.01 for n, d in domains.items())


def test_top1_routing_costs_one_member(domains, experts):
    big = TorchClassifier("mlp", module_kwargs={"hidden": (256, 256)}, epochs=2, random_state=0,
                          threads=1).fit(domains["a"]["X_train"], domains["a"]["y_train"])
    members = {"big": big, **experts}
    moe = compose_experts(members, **_gate_data(domains), epochs=30, random_state=0)
    X = np.concatenate([domains["a"]["X_test"], domains["b"]["X_test"]])
    routed = mixture_flops_per_sample(moe, X)
    shares = routing_shares(moe, X)
    gate = float(sum(2 * p.numel() for n, p in moe.module_.gate.named_parameters() if n.endswith("weight")))
    expected = gate + sum(shares[n] * flops_per_sample(m, X) for n, m in members.items())
    assert routed == pytest.approx(expected, rel=0.02)
    assert routed < 0.5 * flops_per_sample(big, X)  # the big member is hardly ever run


def test_sparse_dispatch_equals_the_dense_mixture(domains, experts):
    moe = compose_experts(experts, **_gate_data(domains), top_k=2, epochs=5, random_state=0)
    X = torch.as_tensor(domains["a"]["X_test"][:50])
    module = moe.module_
    with torch.no_grad():
        sparse = module.eval()(X)
        dense = module.train()(X)  # MLP members: train mode differs only in running every member
        one = torch.cat([module.eval()(X[i:i + 1]) for i in range(5)])
    assert torch.allclose(sparse.exp(), dense.exp(), atol=1e-6)
    assert torch.allclose(one.exp(), sparse[:5].exp(), atol=1e-6)
    moe1 = compose_experts(experts, **_gate_data(domains), top_k=1, epochs=5, random_state=0)
    with torch.no_grad():
        batch = moe1.module_(X)
        single = torch.cat([moe1.module_(X[i:i + 1]) for i in range(10)])
    assert torch.allclose(single.exp(), batch[:10].exp(), atol=1e-6)


def test_it_saves_loads_and_exports_like_any_model(tmp_path, domains, experts):
    moe = compose_experts(experts, **_gate_data(domains), epochs=5, random_state=0,
                          gate={"architecture": "mlp", "kwargs": {"hidden": [8]}})
    X = domains["b"]["X_test"]
    back = load_model(save_model(moe, tmp_path / "moe"))
    assert isinstance(back.module_, GatedMixture)
    assert np.array_equal(back.predict_proba(X), moe.predict_proba(X))
    pytest.importorskip("onnxscript")
    pytest.importorskip("onnxruntime")
    from crossfeed.spawn import export_onnx

    report = export_onnx(moe, tmp_path / "moe.onnx", example_X=X[:32])
    assert report.max_abs_diff < 1e-4


def test_bad_input_is_refused_clearly(domains, experts):
    data = _gate_data(domains)
    three = TorchClassifier("mlp", module_kwargs=MLP, epochs=1, random_state=0).fit(
        domains["a"]["X_train"], domains["a"]["y_train"] + np.arange(300) % 2 * (domains["a"]["y_train"] == 1))
    odd = TorchClassifier("mlp", module_kwargs=MLP, epochs=1, random_state=0).fit(
        domains["a"]["X_train"], domains["a"]["y_train"] + 5)
    with pytest.raises(LabelMismatchError, match="same label set"):
        compose_experts({**experts, "odd": odd}, **data)
    assert len(three.classes_) == 3
    with pytest.raises(LabelMismatchError):
        compose_experts({**experts, "three": three}, **data)
    with pytest.raises(ValidationError, match="the gate needs data"):
        compose_experts(experts)
    with pytest.raises(ValidationError, match="top_k"):
        compose_experts(experts, **data, top_k=3)
    with pytest.raises(ValidationError, match="not among"):
        compose_experts(experts, X_routed=data["X"][:2], routed_to=["a", "zz"])
    with pytest.raises(ValidationError, match="at least 2"):
        compose_experts({"a": experts["a"]}, **data)
    from sklearn.linear_model import LogisticRegression

    with pytest.raises(ValidationError, match="fitted TorchClassifier"):
        compose_experts({**experts, "lr": LogisticRegression().fit(data["X"], data["y"])}, **data)
    with pytest.raises(ValidationError):
        compose_experts(experts, X=data["X"][:, :3], y=data["y"])


def test_wemoe_routers_beat_task_arithmetic(domains):
    pooled_X = np.concatenate([d["X_train"] for d in domains.values()])
    pooled_y = np.concatenate([d["y_train"] for d in domains.values()])
    base = _mlp(0).set_params(epochs=3).fit(pooled_X, pooled_y)
    copies = {n: warm_fit(base, d["X_train"], d["y_train"], epochs=30) for n, d in domains.items()}
    data = _gate_data(domains)
    arithmetic = weight_ensemble(base, copies, data["X"], data["y"], epochs=1, lr=0.0, lam=0.5)
    routed = weight_ensemble(base, copies, data["X"], data["y"], epochs=40, lr=1e-2, lam=0.5)
    mean = lambda m: np.mean([_acc(m, d) for d in domains.values()])  # noqa: E731
    assert mean(routed) > mean(arithmetic) + 0.03
    unlabelled = weight_ensemble(base, copies, data["X"], epochs=2, lr=1e-4, lam=0.5)
    assert np.isfinite(unlabelled.predict_proba(data["X"])).all()
    with pytest.raises(ValidationError, match="fine-tuned copy"):
        weight_ensemble(base, {"x": TorchClassifier("mlp", module_kwargs={"hidden": (4,)}, epochs=1).fit(pooled_X, pooled_y)},
                        data["X"], data["y"])
    with pytest.raises(ValidationError, match="upscale"):
        weight_ensemble(base, copies, data["X"], data["y"], upscale=["nope"])


def test_gate_maths():
    w = top_k_weights(torch.tensor([[0.0, 2.0, 1.0], [3.0, 0.0, 3.0]]), 2)
    assert torch.allclose(w.sum(-1), torch.ones(2))
    assert w[0, 0] == 0 and w[0, 1] > w[0, 2] > 0 and w[1, 1] == 0
    with pytest.raises(ValidationError):
        top_k_weights(torch.zeros(1, 3), 4)
    lp = torch.log_softmax(torch.randn(4, 3, 5), dim=-1)
    g = torch.softmax(torch.randn(4, 3), dim=-1)
    mixed = mixture_log_proba(torch.log(g), lp).exp()
    assert torch.allclose(mixed, (g.unsqueeze(-1) * lp.exp()).sum(1), atol=1e-6)
    assert float(load_balancing_loss(torch.full((6, 3), 1 / 3))) == pytest.approx(1.0)
    collapsed = torch.tensor([[1.0, 0.0, 0.0]] * 6)
    assert float(load_balancing_loss(collapsed)) == pytest.approx(3.0)
