"""Where a training step's time goes: wall-clock per part of a `skill-sd-trl train` recipe run.

    python bench/step_profile.py --config recipes/sokoban/skill_sd_cpu.yaml --max_steps 4 [any recipe flag ...]

Builds the trainer exactly as `skill-sd-trl train` does, wraps timers around the trainer's hooks (sampling, teacher
scoring, the student's log-prob pass, the whole training step) and the environment's `step`, trains, and prints
seconds per part and per optimizer step. Measure on a quiet machine: on 2 cores a second busy process makes torch
several times slower.

:class:`StepParts` is the timing itself; ``bench/recipe_overhead.py`` uses it too, on each trainer it compares.
"""

import collections
import functools
import sys
import tempfile
import time

#: The trainer's hooks that are timed, and their labels. A trainer without a hook (TRL's `GRPOTrainer` has no
#: ``_teacher_logps``) simply has no such part.
TRAINER_PARTS = (("_teacher_logps", "teacher scoring"),
                 ("_get_per_token_logps_and_entropies", "student log-prob pass (forward)"),
                 ("_generate_and_score_completions", "generation batch (sampling + scoring)"),
                 ("training_step", "training step (all)"))
SAMPLING = "sampling (all turns)"
ENVIRONMENT = "environment steps"
REMAINDER = "backward + optimizer (remainder)"


class StepParts:
    """Wall time of every call of a training step's parts, each tagged with the optimizer step it ran in.

    Everything is wrapped on instances (the trainer, its rollout's sampling backend, each environment the rollout
    makes), never on classes: the library is unchanged and nothing outlives the trainer.
    """

    def __init__(self, trainer):
        self.trainer = trainer
        self.records: list[tuple[str, int, float]] = []  # (label, global step of the call, seconds)

    @classmethod
    def install(cls, trainer) -> "StepParts":
        """Time the trainer's hooks (:data:`TRAINER_PARTS`), the sampling of every turn and the environment's
        ``step`` (when the trainer's rollout is a multi-turn one)."""
        from skill_sd_trl import trl_private

        parts = cls(trainer)
        for name, label in TRAINER_PARTS:
            if hasattr(trainer, name):
                parts.wrap(trainer, name, label)
        rollout = trl_private.rollout_func(trainer)
        if hasattr(rollout, "backend"):  # a MultiTurnRollout: its sampler (TurnCache or TRL's path) and its envs
            parts.wrap(rollout.backend(trainer), "generate", SAMPLING)
            make_env = rollout.env_factory

            def timed_env():
                env = make_env()
                parts.wrap(env, "step", ENVIRONMENT)
                return env

            rollout.env_factory = timed_env
        return parts

    def wrap(self, obj, name: str, label: str) -> None:
        original = getattr(obj, name)

        @functools.wraps(original)
        def wrapper(*args, **kwargs):
            step = self.trainer.state.global_step
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.records.append((label, step, time.perf_counter() - start))

        setattr(obj, name, wrapper)

    def totals(self) -> tuple[dict[str, float], collections.Counter]:
        """Seconds and number of calls per part, over the whole run."""
        totals, calls = collections.defaultdict(float), collections.Counter()
        for label, _, seconds in self.records:
            totals[label] += seconds
            calls[label] += 1
        return totals, calls

    def per_step(self, steps: int) -> list[dict[str, float]]:
        """Seconds per part in each of the first ``steps`` optimizer steps (0 for a part that did not run), with the
        backward and optimizer step as the remainder of the training step."""
        rows = [dict.fromkeys([label for _, label in TRAINER_PARTS] + [SAMPLING, ENVIRONMENT], 0.0)
                for _ in range(steps)]
        for label, step, seconds in self.records:
            if step < steps:
                rows[step][label] += seconds
        for row in rows:
            row[REMAINDER] = remainder(row)
        return rows


def remainder(parts: dict[str, float]) -> float:
    """The backward pass and the optimizer step: the training step less the generation batch and the student pass."""
    return (parts["training step (all)"] - parts["generation batch (sampling + scoring)"]
            - parts["student log-prob pass (forward)"])


def main(argv):
    from skill_sd_trl.app.train import build_trainer
    from skill_sd_trl.cli import parse_train_args

    if "--output_dir" not in argv:
        argv = [*argv, "--output_dir", tempfile.mkdtemp(prefix="step-profile-")]
    script, args, model_args, _ = parse_train_args([*argv, "--evaluate_after_training", "false"])
    trainer = build_trainer(script, args, model_args)
    parts = StepParts.install(trainer)
    start = time.perf_counter()
    trainer.train()
    total, steps = time.perf_counter() - start, trainer.state.global_step
    totals, calls = parts.totals()
    print(f"\n{steps} optimizer steps in {total:.1f} s ({total / steps:.1f} s per step)")
    print("| part | seconds per step | calls |\n|---|---|---|")
    for label, seconds in sorted(totals.items(), key=lambda kv: -kv[1]):
        print(f"| {label} | {seconds / steps:.2f} | {calls[label]} |")
    print(f"| {REMAINDER} | {remainder(totals) / steps:.2f} | |")


if __name__ == "__main__":
    main(sys.argv[1:])
