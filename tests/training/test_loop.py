import numpy as np
import pytest
import torch
from torch import nn

from crossfeed.exceptions import ValidationError
from crossfeed.training import Batch, TrainConfig, TrainingHook, evaluate_loss, soft_cross_entropy, train


def _data(n=256, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4)).astype(np.float32)
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(np.int64)
    return X, y


def _model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))


def test_training_learns_and_is_reproducible():
    X, y = _data()
    a, b = _model(), _model()
    cfg = TrainConfig(epochs=15, batch_size=32, lr=1e-2, seed=1)
    train(a, X, y, config=cfg)
    train(b, X, y, config=cfg)
    Xt = torch.as_tensor(X)
    assert evaluate_loss(a, Xt, torch.as_tensor(y))[1] > 0.9
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb)


class _Constant(TrainingHook):
    """Adds a constant to the loss: the loss rises, the gradients do not change."""

    def extra_loss(self, batch, logits, module):
        return torch.tensor(5.0)


class _Counter(TrainingHook):
    def __init__(self):
        self.epochs = []

    def on_epoch_end(self, epoch, logs):
        self.epochs.append(epoch)
        return epoch >= 2  # stop after two epochs


def test_extra_loss_hook_is_added_and_epoch_hook_can_stop():
    X, y = _data()
    counter = _Counter()
    res = train(_model(), X, y, config=TrainConfig(epochs=10, seed=0), hooks=[_Constant(), counter])
    plain = train(_model(), X, y, config=TrainConfig(epochs=2, seed=0))
    assert counter.epochs == [1, 2] and res.stopped_early
    assert res.history[0]["train_loss"] == pytest.approx(plain.history[0]["train_loss"] + 5.0, abs=1e-4)


class _FlipTargets(TrainingHook):
    def targets(self, batch: Batch, module):
        return nn.functional.one_hot(1 - batch.y, 2).float()


def test_targets_hook_replaces_the_labels():
    X, y = _data()
    m = _model()
    train(m, X, y, config=TrainConfig(epochs=15, batch_size=32, lr=1e-2), hooks=[_FlipTargets()])
    assert evaluate_loss(m, torch.as_tensor(X), torch.as_tensor(y))[1] < 0.1


def test_two_hooks_returning_targets_is_an_error():
    X, y = _data()
    with pytest.raises(ValidationError, match="at most one"):
        train(_model(), X, y, config=TrainConfig(epochs=1), hooks=[_FlipTargets(), _FlipTargets()])


def test_sample_weights_change_what_is_learned():
    X, y = _data()
    w = np.where(y == 1, 1.0, 1e-3).astype(np.float32)
    m = _model()
    train(m, X, y, sample_weight=w, config=TrainConfig(epochs=10, lr=1e-2))
    pred = m(torch.as_tensor(X)).argmax(1).numpy()
    assert pred.mean() > 0.85  # almost everything predicted as the heavily weighted class


def test_early_stopping_restores_the_best_epoch():
    X, y = _data(64)
    Xv, yv = _data(64, seed=1)
    yv = 1 - yv  # validation labels that training makes worse: best epoch is the first
    res = train(_model(), X, y, X_val=Xv, y_val=yv, config=TrainConfig(epochs=30, lr=1e-2, patience=3))
    assert res.stopped_early and res.best_epoch < len(res.history)
    losses = [h["val_loss"] for h in res.history]
    assert res.best_epoch == int(np.argmin(losses)) + 1


def test_setup_hook_parameters_are_optimised():
    class WithParam(TrainingHook):
        def __init__(self):
            self.p = nn.Parameter(torch.zeros(()))

        def setup(self, module, device):
            return [self.p]

        def extra_loss(self, batch, logits, module):
            return (self.p - 3.0) ** 2

    X, y = _data()
    hook = WithParam()
    train(_model(), X, y, hooks=[hook], config=TrainConfig(epochs=100, lr=5e-2))
    assert abs(hook.p.item() - 3.0) < 0.5


def test_soft_cross_entropy_matches_cross_entropy_on_one_hot():
    logits = torch.randn(5, 3)
    y = torch.tensor([0, 2, 1, 1, 0])
    ce = nn.functional.cross_entropy(logits, y, reduction="none")
    torch.testing.assert_close(soft_cross_entropy(logits, nn.functional.one_hot(y, 3).float()), ce)


@pytest.mark.parametrize("bad", [dict(epochs=0), dict(batch_size=0), dict(lr=-1.0), dict(optimizer="lion"), dict(patience=0)])
def test_bad_config_is_rejected(bad):
    X, y = _data(16)
    with pytest.raises(ValidationError):
        train(_model(), X, y, config=TrainConfig(**bad))


def test_cuda_request_without_cuda_is_clear():
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    X, y = _data(16)
    with pytest.raises(ValidationError, match="CUDA is not available"):
        train(_model(), X, y, config=TrainConfig(device="cuda"))


class _MSEToConstant(TrainingHook):
    """Base loss: squared distance of every logit to a constant (another one on validation batches)."""

    def __init__(self, target, val_target=None):
        self.target, self.val_target = target, val_target

    def base_loss(self, batch, logits, module):
        if batch.validation:
            return None if self.val_target is None else (logits - self.val_target).square().mean(1)
        return (logits - self.target).square().mean(1)


def test_base_loss_hook_replaces_cross_entropy():
    X, y = _data()
    m, plain = _model(), _model()
    train(m, X, y, hooks=[_MSEToConstant(3.0)], config=TrainConfig(epochs=30, batch_size=32, lr=1e-2))
    train(plain, X, y, config=TrainConfig(epochs=30, batch_size=32, lr=1e-2))
    with torch.no_grad():
        logits, plain_logits = m(torch.as_tensor(X)), plain(torch.as_tensor(X))
    assert (logits - 3.0).abs().mean() < 0.1  # driven to the constant, whatever the labels say
    assert (plain_logits - 3.0).abs().mean() > 1.0


def test_base_loss_hook_gives_the_validation_loss_and_early_stopping():
    X, y = _data(64)
    Xv, yv = _data(64, seed=1)
    m = _model()
    # training pulls the logits to +3, so the validation loss (distance to -3) rises from the first epoch
    res = train(m, X, y, X_val=Xv, y_val=yv, hooks=[_MSEToConstant(3.0, val_target=-3.0)],
                config=TrainConfig(epochs=30, batch_size=16, lr=1e-2, patience=2))
    assert res.stopped_early and res.best_epoch == 1 and len(res.history) == 3
    assert all("val_accuracy" not in h for h in res.history)  # no cross-entropy was computed
    with torch.no_grad():
        expected = (m(torch.as_tensor(Xv)) + 3.0).square().mean().item()  # the best epoch's weights, restored
    assert res.history[0]["val_loss"] == pytest.approx(expected, rel=1e-5)
    # a hook that returns no base loss on validation batches keeps the cross-entropy there
    m = _model()
    res = train(m, X, y, X_val=Xv, y_val=yv, hooks=[_MSEToConstant(3.0)], config=TrainConfig(epochs=1))
    assert "val_accuracy" in res.history[0]
    assert res.history[0]["val_loss"] == pytest.approx(evaluate_loss(m, torch.as_tensor(Xv), torch.as_tensor(yv))[0])


class _FirstHalf(TrainingHook):
    """Sampler: shuffled batches of the first half of the rows only."""

    def batches(self, epoch, n_samples, batch_size, generator):
        return torch.randperm(n_samples // 2, generator=generator).split(batch_size)


def test_sampler_hook_decides_which_rows_are_trained_on():
    X, _ = _data()
    X = X[np.argsort(X[:, 0])]
    y = (np.arange(len(X)) >= len(X) // 2).astype(np.int64)  # first half: class 0 only, second half: class 1
    half, full = _model(), _model()
    cfg = TrainConfig(epochs=15, batch_size=32, lr=1e-2)
    train(half, X, y, hooks=[_FirstHalf()], config=cfg)
    train(full, X, y, config=cfg)
    Xt, yt = torch.as_tensor(X), torch.as_tensor(y)
    assert (half(Xt).argmax(1) == 0).all()  # it never saw a label of the second half
    assert evaluate_loss(full, Xt, yt)[1] > 0.9


def test_two_samplers_or_two_base_losses_are_an_error():
    X, y = _data(16)
    with pytest.raises(ValidationError, match="batch sampler; at most one"):
        train(_model(), X, y, config=TrainConfig(epochs=1), hooks=[_FirstHalf(), _FirstHalf()])
    with pytest.raises(ValidationError, match="base loss for the same batch; at most one"):
        train(_model(), X, y, config=TrainConfig(epochs=1), hooks=[_MSEToConstant(0.0), _MSEToConstant(1.0)])
