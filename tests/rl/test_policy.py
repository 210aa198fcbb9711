"""The policy network and its files: round trip, clear errors, atomic writes."""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest

pytest.importorskip("gymnasium")
pytest.importorskip("stable_baselines3")

import torch  # noqa: E402

from crossfeed.exceptions import ModelFileError, ValidationError  # noqa: E402
from crossfeed.rl import Policy, check_policy_fits, load_policy, save_policy  # noqa: E402


def policy(seed: int = 0, hidden=(8, 8)) -> Policy:
    torch.manual_seed(seed)
    return Policy(4, 2, hidden)


def outputs(p: Policy) -> tuple[np.ndarray, np.ndarray]:
    obs = torch.from_numpy(np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32))
    with torch.no_grad():
        logits, value = p(obs)
    return logits.numpy(), value.numpy()


def assert_same(a: Policy, b: Policy) -> None:
    for x, y in zip(outputs(a), outputs(b)):
        np.testing.assert_array_equal(x, y)


def test_forward_shapes_and_act():
    p = policy()
    logits, value = p(torch.zeros(3, 4))
    assert logits.shape == (3, 2) and value.shape == (3,)
    obs = np.random.default_rng(1).normal(size=(32, 4)).astype(np.float32)
    np.testing.assert_array_equal(p.act(obs), outputs_argmax(p, obs))
    sampled = p.act(obs, deterministic=False, rng=np.random.default_rng(0))
    again = p.act(obs, deterministic=False, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(sampled, again)
    assert set(np.unique(sampled)) <= {0, 1}


def outputs_argmax(p: Policy, obs: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return p(torch.from_numpy(obs))[0].argmax(-1).numpy()


def test_sampling_follows_the_probabilities():
    p = policy()
    with torch.no_grad():
        p.action_net.weight.zero_()
        p.action_net.bias.copy_(torch.tensor([0.0, np.log(3.0)]))  # P(action 1) = 0.75
    actions = p.act(np.zeros((4000, 4), np.float32), deterministic=False, rng=np.random.default_rng(0))
    assert actions.mean() == pytest.approx(0.75, abs=0.03)


def test_clone_is_independent():
    p = policy()
    twin = p.clone()
    assert_same(p, twin)
    with torch.no_grad():
        twin.action_net.bias.add_(1.0)
    assert not np.array_equal(outputs(p)[0], outputs(twin)[0])


@pytest.mark.parametrize(("args", "fragment"), [((0, 2), "obs_dim=0"), ((4, 1), "n_actions=1"), ((4, 2, ()), r"hidden=\(\)"),
                                                ((4, 2, (8, 0)), r"hidden=\(8, 0\)")])
def test_bad_policy_shapes(args, fragment):
    with pytest.raises(ValidationError, match=f"a policy needs obs_dim >= 1.*{fragment}"):
        Policy(*args)


def test_check_policy_fits():
    check_policy_fits(policy(), (4,), 2, where="cartpole")
    with pytest.raises(ValidationError, match=r"chooses among 2 actions, but acrobot has 6 observation values and 3 actions"):
        check_policy_fits(policy(), (6,), 3, where="acrobot")


def test_save_and_load_round_trip(tmp_path):
    p = policy(3, hidden=(16, 8))
    config = save_policy(p, tmp_path / "sub" / "pi", meta={"model": "general"})
    assert config == tmp_path / "sub" / "pi.json"
    assert sorted(f.name for f in config.parent.iterdir()) == ["pi.json", "pi.safetensors"]
    body = json.loads(config.read_text())
    digest = hashlib.sha256((tmp_path / "sub" / "pi.safetensors").read_bytes()).hexdigest()
    assert body == {"format": "crossfeed.rl.Policy/1", "obs_dim": 4, "n_actions": 2, "hidden": [16, 8],
                    "meta": {"model": "general"}, "weights_sha256": digest}
    for path in (tmp_path / "sub" / "pi", config, tmp_path / "sub" / "pi.safetensors"):
        back = load_policy(path)
        assert back.config() == p.config()
        assert_same(p, back)


def test_loading_a_missing_policy(tmp_path):
    with pytest.raises(ModelFileError, match=r"no policy file .*nope\.safetensors: expected the \.safetensors and \.json"):
        load_policy(tmp_path / "nope")
    save_policy(policy(), tmp_path / "pi")
    (tmp_path / "pi.json").unlink()
    with pytest.raises(ModelFileError, match=r"no policy file .*pi\.json"):
        load_policy(tmp_path / "pi")


def test_loading_a_json_of_another_format(tmp_path):
    config = save_policy(policy(), tmp_path / "pi")
    body = json.loads(config.read_text())
    config.write_text(json.dumps({**body, "format": "someone-else/2"}))
    with pytest.raises(ModelFileError, match=r"pi\.json is not a crossfeed policy \(expected format 'crossfeed\.rl\.Policy/1'\)"):
        load_policy(tmp_path / "pi")
    config.write_text("[1, 2]")
    with pytest.raises(ModelFileError, match="is not a crossfeed policy"):
        load_policy(tmp_path / "pi")


def test_loading_corrupted_json(tmp_path):
    config = save_policy(policy(), tmp_path / "pi")
    config.write_text('{"format": "crossfeed.rl.Policy/1", "obs_dim": 4,')
    with pytest.raises(ModelFileError, match=r"pi\.json is not valid JSON .*re-save the policy with save_policy"):
        load_policy(tmp_path / "pi")
    config.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ModelFileError, match="is not valid JSON"):
        load_policy(tmp_path / "pi")


@pytest.mark.parametrize(
    "change",
    [{"hidden": [16, 16]}, {"obs_dim": 6}, {"n_actions": 3}, {"hidden": "wide"}, {"obs_dim": 0}],
    ids=["hidden", "obs_dim", "n_actions", "hidden-not-a-list", "obs_dim-invalid"],
)
def test_weights_that_do_not_match_the_config(tmp_path, change):
    config = save_policy(policy(), tmp_path / "pi")
    config.write_text(json.dumps({**json.loads(config.read_text()), **change}))
    with pytest.raises(ModelFileError, match=r"pi\.safetensors does not match its config .*pi\.json"):
        load_policy(tmp_path / "pi")


def test_config_missing_a_key(tmp_path):
    config = save_policy(policy(), tmp_path / "pi")
    body = json.loads(config.read_text())
    del body["hidden"]
    config.write_text(json.dumps(body))
    with pytest.raises(ModelFileError, match="does not match its config"):
        load_policy(tmp_path / "pi")


@pytest.mark.parametrize("payload", [b"", b"not a safetensors file at all"], ids=["empty", "garbage"])
def test_loading_corrupted_weights(tmp_path, payload):
    save_policy(policy(), tmp_path / "pi")
    (tmp_path / "pi.safetensors").write_bytes(payload)
    with pytest.raises(ModelFileError, match=r"pi\.safetensors"):
        load_policy(tmp_path / "pi")


def test_a_failed_save_leaves_the_old_files_whole(tmp_path, monkeypatch):
    old = policy(0)
    save_policy(old, tmp_path / "pi", meta={"v": 1})
    before = {f.name: f.read_bytes() for f in tmp_path.iterdir()}

    def broken_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        save_policy(policy(1), tmp_path / "pi", meta={"v": 2})
    monkeypatch.undo()
    after = {f.name: f.read_bytes() for f in tmp_path.iterdir()}
    assert after == before  # no temporary file left, neither file touched
    assert_same(old, load_policy(tmp_path / "pi"))


def test_a_failed_first_save_writes_nothing(tmp_path, monkeypatch):
    def broken_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError):
        save_policy(policy(), tmp_path / "pi")
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ModelFileError, match="no policy file"):
        load_policy(tmp_path / "pi")


def test_a_save_failing_between_its_two_files_is_detected(tmp_path, monkeypatch):
    import crossfeed.rl._policy as policy_module

    old, new = policy(0), policy(1)
    save_policy(old, tmp_path / "pi", meta={"v": 1})
    real = policy_module.atomic_write_bytes
    calls = []

    def fail_second(path, data):
        calls.append(path)
        if len(calls) == 2:
            raise OSError("killed between the two files")
        real(path, data)

    monkeypatch.setattr(policy_module, "atomic_write_bytes", fail_second)
    with pytest.raises(OSError):
        save_policy(new, tmp_path / "pi", meta={"v": 2})
    monkeypatch.undo()
    try:
        back = load_policy(tmp_path / "pi")
    except ModelFileError:
        return  # a torn pair reported as such is fine
    assert_same(old, back)  # ...or the old policy, whole
