"""The policy network: a categorical actor-critic, saved as safetensors + JSON.

:class:`Policy` has the layout of stable-baselines3's ``ActorCriticPolicy`` for an MLP
(``mlp_extractor.policy_net``, ``mlp_extractor.value_net``, ``action_net``, ``value_net``), so its
weights load into a PPO learner and back without renaming; everything else in ``crossfeed.rl``
(evaluation, distillation, Reptile) needs only torch.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from crossfeed._cache import atomic_write_bytes
from crossfeed.exceptions import ModelFileError, ValidationError

__all__ = ["LearnedPolicy", "Policy", "check_policy_fits", "load_policy", "save_policy"]

_FORMAT = "crossfeed.rl.Policy/1"


def _mlp(n_in: int, hidden: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(n_in, width), nn.Tanh()]
        n_in = width
    return nn.Sequential(*layers)


class Policy(nn.Module):
    """Actor-critic over a flat observation: ``forward(obs) -> (action logits, state value)``.

    Parameters
    ----------
    obs_dim : length of the (flattened) observation.
    n_actions : number of discrete actions.
    hidden : widths of the hidden layers of the actor and of the critic (separate networks).
    """

    def __init__(self, obs_dim: int, n_actions: int, hidden: Sequence[int] = (64, 64)) -> None:
        super().__init__()
        if obs_dim < 1 or n_actions < 2 or not hidden or any(int(w) < 1 for w in hidden):
            raise ValidationError(
                f"a policy needs obs_dim >= 1, n_actions >= 2 and positive hidden widths; "
                f"got obs_dim={obs_dim}, n_actions={n_actions}, hidden={tuple(hidden)}"
            )
        self.obs_dim, self.n_actions, self.hidden = int(obs_dim), int(n_actions), tuple(int(w) for w in hidden)
        self.mlp_extractor = nn.Module()
        self.mlp_extractor.policy_net = _mlp(self.obs_dim, self.hidden)
        self.mlp_extractor.value_net = _mlp(self.obs_dim, self.hidden)
        self.action_net = nn.Linear(self.hidden[-1], self.n_actions)
        self.value_net = nn.Linear(self.hidden[-1], 1)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        obs = obs.reshape(obs.shape[0], -1).float()
        logits = self.action_net(self.mlp_extractor.policy_net(obs))
        value = self.value_net(self.mlp_extractor.value_net(obs)).squeeze(-1)
        return logits, value

    @torch.no_grad()
    def act(self, obs: np.ndarray, *, deterministic: bool = True, rng: np.random.Generator | None = None) -> np.ndarray:
        """Actions for a batch of observations: the most likely one, or sampled with ``rng``."""
        logits, _ = self(torch.as_tensor(np.asarray(obs, dtype=np.float32)))
        if deterministic:
            return logits.argmax(-1).numpy()
        probs = torch.softmax(logits, -1).numpy().astype(np.float64)
        rng = rng if rng is not None else np.random.default_rng()
        u = rng.random((probs.shape[0], 1))
        return np.minimum((probs.cumsum(-1) < u).sum(-1), self.n_actions - 1)

    def config(self) -> dict[str, Any]:
        return {"obs_dim": self.obs_dim, "n_actions": self.n_actions, "hidden": list(self.hidden)}

    def clone(self) -> Policy:
        twin = Policy(**self.config())
        twin.load_state_dict(self.state_dict())
        return twin


@dataclass
class LearnedPolicy:
    """What distillation and Reptile return: the policy, a log line per iteration, the environment
    interactions spent and the seconds taken."""

    policy: Policy
    log: list[dict[str, Any]] = field(default_factory=list)
    interactions: int = 0
    seconds: float = 0.0


def check_policy_fits(policy: Policy, obs_shape: Sequence[int], n_actions: int, *, where: str) -> None:
    """Raise if ``policy`` cannot act in an environment with these spaces."""
    obs_dim = int(np.prod(obs_shape))
    if policy.obs_dim != obs_dim or policy.n_actions != n_actions:
        raise ValidationError(
            f"the policy takes {policy.obs_dim} observation values and chooses among {policy.n_actions} "
            f"actions, but {where} has {obs_dim} observation values and {n_actions} actions; "
            "use a policy built for this environment family"
        )


def save_policy(policy: Policy, path: str | os.PathLike[str], *, meta: dict[str, Any] | None = None) -> Path:
    """Write ``path`` (.safetensors) and its JSON config next to it; returns the JSON path.

    Each file is replaced atomically; the JSON (written second) records the weights' sha256, so a
    save interrupted between the two files is detected by :func:`load_policy`, not loaded.
    """
    from safetensors.torch import save

    weights = Path(path).with_suffix(".safetensors")
    config = weights.with_suffix(".json")
    weights.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().clone() for k, v in policy.state_dict().items()}
    data = save(state)
    atomic_write_bytes(weights, data)
    body = {"format": _FORMAT, **policy.config(), "meta": meta or {}, "weights_sha256": hashlib.sha256(data).hexdigest()}
    atomic_write_bytes(config, json.dumps(body, indent=2, sort_keys=True).encode())
    return config


def load_policy(path: str | os.PathLike[str]) -> Policy:
    """Read a policy written by :func:`save_policy` (no pickle is involved)."""
    from safetensors.torch import load

    weights = Path(path).with_suffix(".safetensors")
    config = weights.with_suffix(".json")
    for p in (weights, config):
        if not p.is_file():
            raise ModelFileError(f"no policy file {p}: expected the .safetensors and .json written by save_policy")
    try:
        body = json.loads(config.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{config} is not valid JSON ({exc}); re-save the policy with save_policy") from None
    if not isinstance(body, dict) or body.get("format") != _FORMAT:
        raise ModelFileError(f"{config} is not a crossfeed policy (expected format {_FORMAT!r})")
    data = weights.read_bytes()
    if body.get("weights_sha256") != hashlib.sha256(data).hexdigest():
        raise ModelFileError(
            f"{weights} does not match the sha256 recorded in {config.name} ({len(data)} bytes): it was changed, "
            "truncated or written by another save than its config (a save interrupted between the two files); "
            "save the policy again"
        )
    try:
        policy = Policy(body["obs_dim"], body["n_actions"], body["hidden"])
        policy.load_state_dict(load(data))
    except Exception as exc:  # safetensors raises its own SafetensorError for unreadable bytes
        raise ModelFileError(f"{weights} does not match its config {config}: {exc}") from None
    return policy
