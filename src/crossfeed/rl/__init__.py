"""Reinforcement learning: environment variants as industries, policy distillation, meta-RL.

The RL counterpart of the suites and the feedback strategies (needs ``pip install 'crossfeed[rl]'``:
gymnasium and stable-baselines3):

- :class:`EnvVariant` / :class:`VariantSuite` / :func:`load_rl_suite`: gymnasium families with
  changed physics as industries, plus held-out variants;
- :func:`train_ppo`: PPO experts (stable-baselines3) that start from and return a :class:`Policy`;
- :func:`distill_policies`: policy distillation (Rusu et al. 2016), DAgger-style;
- :func:`reptile`: meta-RL, an initial policy that adapts fastest;
- :func:`run_rl_cycle`: spawn -> specialise -> distil, every policy measured on every variant.

Example
-------
>>> from crossfeed.rl import load_rl_suite, run_rl_cycle      # doctest: +SKIP
>>> cycle = run_rl_cycle(load_rl_suite("cartpole"), generations=1, seed=0)   # doctest: +SKIP
>>> cycle.generations[-1].returns["general"]["long-pole"]     # doctest: +SKIP
"""

from crossfeed.rl._cycle import RLCycle, RLGeneration, run_rl_cycle
from crossfeed.rl._distill import DistillSettings, distill_policies, policy_kl
from crossfeed.rl._envs import PHYSICS, EnvVariant, PhysicsParam, VariantSuite, discrete_actions, make_env
from crossfeed.rl._evaluate import episode_returns, interactions_to_reach, mean_return
from crossfeed.rl._meta import ReptileSettings, reptile, reptile_step
from crossfeed.rl._policy import LearnedPolicy, Policy, check_policy_fits, load_policy, save_policy
from crossfeed.rl._ppo import PPOSettings, TrainResult, initial_policy, train_ppo
from crossfeed.rl._suites import RL_SUITES, load_rl_suite

__all__ = [
    "DistillSettings",
    "EnvVariant",
    "LearnedPolicy",
    "PHYSICS",
    "PPOSettings",
    "PhysicsParam",
    "Policy",
    "RLCycle",
    "RLGeneration",
    "RL_SUITES",
    "ReptileSettings",
    "TrainResult",
    "VariantSuite",
    "check_policy_fits",
    "discrete_actions",
    "distill_policies",
    "episode_returns",
    "initial_policy",
    "interactions_to_reach",
    "load_policy",
    "load_rl_suite",
    "make_env",
    "mean_return",
    "policy_kl",
    "reptile",
    "reptile_step",
    "run_rl_cycle",
    "save_policy",
    "train_ppo",
]
