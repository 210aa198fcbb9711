import copy

import numpy as np
import pytest
import torch

from crossfeed.exceptions import EmptyDataError, LabelMismatchError, ValidationError
from crossfeed.federated import Client, simulate
from crossfeed.feedback import (
    FedAvg,
    FedDF,
    FedMD,
    FedProx,
    LocalTask,
    TrainSettings,
    average_logits,
    average_probabilities,
    consensus,
    feddf,
)
from crossfeed.feedback.feddf import teacher_probabilities
from crossfeed.models import TorchClassifier
from crossfeed.training import TrainingHook

from .conftest import SETTINGS, federation


@pytest.fixture(scope="module")
def data(blobs):
    X, y = blobs
    clients, init = federation(blobs, rows=400, n_clients=4, alpha=0.3, min_samples=10)
    return {"X": X, "y": y, "clients": clients, "init": init, "server_X": X[400:500], "test": (X[500:], y[500:])}


def weights(model):
    return torch.cat([p.detach().flatten() for p in model.module_.parameters()])


def test_one_client_one_round_of_fedavg_is_plain_local_training(data):
    client = data["clients"][0]
    run = simulate(FedAvg(rounds=1), data["init"], [client], settings=SETTINGS)
    from crossfeed.training import train
    module = copy.deepcopy(data["init"].module_)
    train(module, client.X, np.searchsorted(data["init"].classes_, client.y), config=SETTINGS.train_config(1000))
    assert torch.allclose(weights(run.model), torch.cat([p.detach().flatten() for p in module.parameters()]))


def test_simulate_is_seeded_logs_rounds_and_leaves_the_model_alone(data):
    before = weights(data["init"]).clone()
    a = simulate(FedProx(rounds=3, mu=0.1), data["init"], data["clients"], settings=SETTINGS, test=data["test"])
    b = simulate(FedProx(rounds=3, mu=0.1), data["init"], data["clients"], settings=SETTINGS, test=data["test"])
    assert torch.equal(weights(a.model), weights(b.model))
    assert torch.equal(weights(data["init"]), before)
    assert [r.round for r in a.rounds] == [1, 2, 3] and len(a.accuracy) == 3
    n_params = sum(t.numel() for t in data["init"].module_.state_dict().values())
    assert a.rounds[0].bytes_sent >= 4 * n_params * 4  # 4 clients sent their float32 weights
    assert a.accuracy[-1] > 0.5 and a.rounds_to(0.0) == 1


def test_feddf_server_distillation_moves_the_global_model_to_the_clients_ensemble(data):
    """A no-op distillation (plain FedAvg) leaves the averaged model further from the ensemble."""
    X_t = data["server_X"]
    kl, captured = {}, {}
    for strategy in (FedAvg(rounds=1), FedDF(rounds=1, server_epochs=5)):
        captured.clear()

        class Spy(type(strategy)):
            def aggregate(self, round, start, updates, failures):
                captured["teacher"] = average_logits([u.module for u in updates], X_t, [u.weight for u in updates])
                return super().aggregate(round, start, updates, failures)

        spy = Spy(**{k: getattr(strategy, k) for k in strategy.params})
        drift = TrainSettings(epochs=20, lr=2e-2, batch_size=16, threads=1)  # non-IID clients drift apart
        run = simulate(spy, data["init"], data["clients"], settings=drift, server_X=X_t)
        p = torch.softmax(torch.as_tensor(captured["teacher"]), -1)
        log_q = torch.log_softmax(torch.as_tensor(run.model.predict_logits(X_t)), -1)
        kl[strategy.name] = float((p * (torch.log(p) - log_q)).sum(-1).mean())
    assert kl["feddf"] < 0.5 * kl["fedavg"], kl


def test_a_fraction_of_the_clients_trains_each_round_seeded_and_the_rest_sends_nothing(data):
    run = simulate(FedAvg(rounds=4, fraction=0.5), data["init"], data["clients"], settings=SETTINGS)
    cohorts = [r.clients for r in run.rounds]
    assert all(len(c) == 2 for c in cohorts) and len(set(cohorts)) > 1  # 2 of 4 clients, not always the same
    again = simulate(FedAvg(rounds=4, fraction=0.5), data["init"], data["clients"], settings=SETTINGS)
    assert [r.clients for r in again.rounds] == cohorts and torch.equal(weights(again.model), weights(run.model))
    full = simulate(FedAvg(rounds=4), data["init"], data["clients"], settings=SETTINGS)
    assert all(len(r.clients) == 4 for r in full.rounds)
    assert run.rounds[0].bytes_sent * 2 == full.rounds[0].bytes_sent
    assert not torch.equal(weights(full.model), weights(run.model))
    # FedDF draws its cohort the same way
    df = simulate(FedDF(rounds=4, fraction=0.5), data["init"], data["clients"], settings=SETTINGS,
                  server_X=data["server_X"])
    assert [r.clients for r in df.rounds] == cohorts


def test_feddf_needs_transfer_rows(data):
    with pytest.raises(EmptyDataError, match="transfer"):
        simulate(FedDF(rounds=1), data["init"], data["clients"], settings=SETTINGS)


def test_feddf_early_stopping_never_leaves_a_round_worse_on_the_servers_validation_rows(data, monkeypatch):
    """Every round's network is at least as accurate on the validation rows as that round's average
    (epoch 0); a sabotaged teacher (random logits) is refused: with early stopping the run is FedAvg's,
    without it far worse."""
    X_t, val = data["server_X"], (data["X"][500:], data["y"][500:])
    drift = TrainSettings(epochs=5, lr=1e-2, batch_size=16, threads=1)
    checked = []

    class Check(FedDF):
        def aggregate(self, round, start, updates, failures):
            averaged = FedAvg.aggregate(self, round, start, updates, failures)
            out = super().aggregate(round, start, updates, failures)
            checked.append([float((average_logits([m], val[0]).argmax(1) == val[1]).mean()) for m in (averaged, out)])
            return out

    simulate(Check(rounds=2, server_epochs=3, early_stopping=True), data["init"], data["clients"], settings=drift,
             server_X=X_t, server_val=val)
    assert len(checked) == 2 and all(after >= before for before, after in checked), checked
    rng = np.random.default_rng(0)
    monkeypatch.setattr(feddf, "average_logits", lambda modules, X, weights: 10 * rng.normal(size=(len(X), 4)))
    fedavg = simulate(FedAvg(rounds=2), data["init"], data["clients"], settings=drift, test=val)
    plain = simulate(FedDF(rounds=2, server_epochs=5), data["init"], data["clients"], settings=drift, server_X=X_t,
                     test=val)
    guarded = simulate(FedDF(rounds=2, server_epochs=5, early_stopping=True), data["init"], data["clients"],
                       settings=drift, server_X=X_t, server_val=val, test=val)
    assert torch.equal(weights(guarded.model), weights(fedavg.model))
    assert plain.accuracy[-1] < fedavg.accuracy[-1] - 0.2, (plain.accuracy, fedavg.accuracy)


def test_feddf_early_stopping_needs_labelled_server_rows_and_the_probability_teacher_is_their_mean(data):
    with pytest.raises(EmptyDataError, match="server_val=\\(X, y\\)"):
        simulate(FedDF(rounds=1, early_stopping=True), data["init"], data["clients"], settings=SETTINGS,
                 server_X=data["server_X"])
    with pytest.raises(LabelMismatchError, match="labels \\[9\\]"):
        simulate(FedDF(rounds=1, early_stopping=True), data["init"], data["clients"], settings=SETTINGS,
                 server_X=data["server_X"], server_val=(data["X"][:5], np.full(5, 9)))
    with pytest.raises(ValidationError, match="server_val: 5 rows"):
        simulate(FedDF(rounds=1), data["init"], data["clients"], settings=SETTINGS, server_X=data["server_X"],
                 server_val=(data["X"][:5], data["y"][:4]))
    # one confident client and one unsure: the mean of logits follows the confident one, the mean of
    # probabilities weighs them as probabilities
    a, b = torch.nn.Linear(1, 2), torch.nn.Linear(1, 2)
    with torch.no_grad():
        a.weight.zero_(), b.weight.zero_()
        a.bias.copy_(torch.tensor([0.0, 12.0])), b.bias.copy_(torch.tensor([1.0, 0.0]))
    X1 = np.ones((1, 1), dtype=np.float32)
    p = teacher_probabilities(average_probabilities([a, b], X1))[0]
    expected = (torch.softmax(torch.tensor([0.0, 12.0]), 0) + torch.softmax(torch.tensor([1.0, 0.0]), 0)) / 2
    assert np.allclose(p, expected.numpy(), atol=1e-5)
    assert teacher_probabilities(average_logits([a, b], X1))[0][1] > 0.99 > p[1]


def test_fedmd_sends_only_logits_and_the_large_model_learns_from_them(data):
    """The server holds unlabelled public rows only: every gain of its model comes from the clients' logits."""
    seen = []

    class Spy(FedMD):
        def aggregate(self, round, start, updates, failures):
            seen.extend(u.arrays for u in updates)
            return super().aggregate(round, start, updates, failures)

    X_pub = data["server_X"]
    run = simulate(Spy(rounds=3), data["init"], data["clients"], settings=SETTINGS, server_X=X_pub,
                   test=data["test"])
    assert all(set(a) == {"logits"} and a["logits"].shape == (len(X_pub), 4) for a in seen)
    assert run.rounds[0].bytes_sent == len(data["clients"]) * len(X_pub) * 4 * 4
    before = data["init"].score(*data["test"])
    assert run.accuracy[-1] > before + 0.2, (before, run.accuracy)


def test_consensus_is_the_weighted_mean():
    out = consensus([torch.ones(2, 3), torch.zeros(2, 3)], [3.0, 1.0])
    np.testing.assert_allclose(out, np.full((2, 3), 0.75))


class Crash(TrainingHook):
    def extra_loss(self, batch, logits, module):
        raise RuntimeError("client process killed")


class CrashOne(FedAvg):
    """Client 1 dies in the middle of its local training in round 2."""

    def local_tasks(self, round, state):
        tasks = super().local_tasks(round, state)
        return [LocalTask(t.client, t.X, t.y, t.weight, hooks=[Crash()]) if round == 2 and i == 1 else t
                for i, t in enumerate(tasks)]


def test_a_client_killed_mid_round_is_dropped_and_reported(data):
    run = simulate(CrashOne(rounds=3), data["init"], data["clients"], settings=SETTINGS)
    second = run.rounds[1]
    assert [f.client for f in second.failures] == [data["clients"][1].name]
    assert "client process killed" in second.failures[0].reason
    assert data["clients"][1].name not in second.clients and len(second.clients) == 3
    assert not second.kept_previous and not run.rounds[2].failures


class Poison(TrainingHook):
    def teardown(self, module):
        with torch.no_grad():
            next(module.parameters()).fill_(float("nan"))


class PoisonAll(FedAvg):
    def local_tasks(self, round, state):
        return [LocalTask(t.client, t.X, t.y, t.weight, hooks=[Poison()]) for t in super().local_tasks(round, state)]


def test_non_finite_updates_and_timeouts_are_dropped_and_the_old_model_kept(data):
    run = simulate(PoisonAll(rounds=2), data["init"], data["clients"][:2], settings=SETTINGS)
    assert all(r.kept_previous for r in run.rounds)
    assert all("non-finite" in f.reason for f in run.rounds[0].failures) and len(run.rounds[0].failures) == 2
    assert torch.equal(weights(run.model), weights(data["init"]))
    late = simulate(FedAvg(rounds=1), data["init"], data["clients"], settings=SETTINGS, timeout_s=0.0)
    assert late.rounds[0].kept_previous and all("timed out" in f.reason for f in late.rounds[0].failures)


def test_bad_input_gets_clear_errors(data):
    init = data["init"]
    with pytest.raises(EmptyDataError, match="holds no rows"):
        Client("empty", np.zeros((0, 8)), np.zeros(0))
    with pytest.raises(LabelMismatchError, match="labels \\[7\\]"):
        simulate(FedAvg(rounds=1), init, [Client("odd", np.zeros((5, 8)), np.full(5, 7))], settings=SETTINGS)
    with pytest.raises(ValidationError, match="unique"):
        simulate(FedAvg(rounds=1), init, [data["clients"][0]] * 2, settings=SETTINGS)
    with pytest.raises(ValidationError, match="fitted TorchClassifier"):
        simulate(FedAvg(rounds=1), TorchClassifier("mlp"), data["clients"], settings=SETTINGS)


def test_gaussian_epsilon_is_the_best_renyi_conversion():
    from crossfeed.feedback import gaussian_epsilon

    sigma, rounds, delta = 1.3, 7, 1e-5
    numeric = min(rounds * a / (2 * sigma**2) + np.log(1 / delta) / (a - 1) for a in np.linspace(1.01, 200, 200_000))
    assert gaussian_epsilon(sigma, rounds, delta) == pytest.approx(numeric, rel=1e-4)
    assert gaussian_epsilon(0.0, 3, delta) == float("inf") and gaussian_epsilon(2.0, 0, delta) == 0.0
    assert gaussian_epsilon(2.0, 10, delta) < gaussian_epsilon(1.0, 10, delta) < gaussian_epsilon(1.0, 20, delta)
    with pytest.raises(ValidationError, match="delta"):
        gaussian_epsilon(1.0, 1, 1.5)


def test_clip_update_bounds_the_norm_and_leaves_small_updates():
    from crossfeed.feedback import clip_update

    big = {"a": torch.full((4,), 3.0), "b": torch.full((2, 2), 4.0)}
    clipped, norm = clip_update(big, 2.0)
    assert norm == pytest.approx(10.0)
    assert float(torch.sqrt(sum(v.pow(2).sum() for v in clipped.values()))) == pytest.approx(2.0)
    small, _ = clip_update({"a": torch.tensor([0.1])}, 2.0)
    assert torch.equal(small["a"], torch.tensor([0.1]))


def test_dp_fedavg_without_noise_or_clipping_is_unweighted_fedavg_and_noise_costs_accuracy(data):
    from crossfeed.feedback import DPFedAvg

    class Unweighted(FedAvg):
        def local_tasks(self, round, state):
            return [LocalTask(t.client, t.X, t.y, 1.0) for t in super().local_tasks(round, state)]

    plain = simulate(Unweighted(rounds=2), data["init"], data["clients"], settings=SETTINGS, test=data["test"])
    loose = simulate(DPFedAvg(rounds=2, clip_norm=1e6, noise_multiplier=0.0), data["init"], data["clients"],
                     settings=SETTINGS, test=data["test"])
    assert torch.allclose(weights(plain.model), weights(loose.model), atol=1e-5)
    assert loose.epsilon == float("inf")
    noisy = DPFedAvg(rounds=2, clip_norm=0.05, noise_multiplier=4.0)
    run = simulate(noisy, data["init"], data["clients"], settings=SETTINGS, test=data["test"])
    assert run.epsilon == pytest.approx(noisy.epsilon()) and np.isfinite(run.epsilon)
    assert noisy.clipped_ == [4, 4]  # every client moved further than 0.05
    assert run.accuracy[-1] < plain.accuracy[-1] - 0.1, (run.accuracy, plain.accuracy)
