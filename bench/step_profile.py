"""Where a training step's time goes: wall-clock per part of a `skill-sd-trl train` recipe run.

    python bench/step_profile.py --config recipes/sokoban/skill_sd_cpu.yaml --max_steps 4 [any recipe flag ...]

Builds the trainer exactly as `skill-sd-trl train` does, wraps timers around the trainer's hooks (sampling, teacher
scoring, the student's log-prob pass, the whole training step) and the environment's `step`, trains, and prints
seconds per part and per optimizer step. Measure on a quiet machine: on 2 cores a second busy process makes torch
several times slower.
"""

import collections
import functools
import sys
import tempfile
import time


def timed(obj, name, label, totals, calls):
    original = getattr(obj, name)

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            totals[label] += time.perf_counter() - start
            calls[label] += 1

    setattr(obj, name, wrapper)


def main(argv):
    from skill_sd_trl.cli import parse_train_args
    from skill_sd_trl.envs.sokoban.env import SokobanEnv
    from skill_sd_trl.rollout.multi_turn import TrainerBackend
    from skill_sd_trl.app.train import build_trainer

    if "--output_dir" not in argv:
        argv = [*argv, "--output_dir", tempfile.mkdtemp(prefix="step-profile-")]
    script, args, model_args, recipe = parse_train_args([*argv, "--evaluate_after_training", "false"])
    trainer = build_trainer(script, args, model_args, recipe)
    totals, calls = collections.defaultdict(float), collections.Counter()
    for name, label in (("_teacher_logps", "teacher scoring"),
                        ("_get_per_token_logps_and_entropies", "student log-prob pass (forward)"),
                        ("_generate_and_score_completions", "generation batch (sampling + scoring)"),
                        ("training_step", "training step (all)")):
        timed(trainer, name, label, totals, calls)
    timed(SokobanEnv, "step", "environment steps", totals, calls)
    timed(TrainerBackend, "generate", "sampling (all turns)", totals, calls)  # either path: TurnCache or TRL's
    start = time.perf_counter()
    trainer.train()
    total, steps = time.perf_counter() - start, trainer.state.global_step
    print(f"\n{steps} optimizer steps in {total:.1f} s ({total / steps:.1f} s per step)")
    print("| part | seconds per step | calls |\n|---|---|---|")
    for label, seconds in sorted(totals.items(), key=lambda kv: -kv[1]):
        print(f"| {label} | {seconds / steps:.2f} | {calls[label]} |")
    backward = totals["training step (all)"] - totals["generation batch (sampling + scoring)"] \
        - totals["student log-prob pass (forward)"]
    print(f"| backward + optimizer (remainder) | {backward / steps:.2f} | |")


if __name__ == "__main__":
    main(sys.argv[1:])
