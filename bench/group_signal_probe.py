"""Where does GRPO have a signal? A recipe's base model, sampled as in training, on the recipe's training tasks.

    python bench/group_signal_probe.py --config recipes/sokoban/skill_sd_cpu.yaml [--skip_train_samples 32 ...]

For every training task the recipe selects, plays ``num_generations`` episodes at the recipe's temperature (the
group GRPO would sample at step 1, multi-turn, with the recipe's limits) and counts the solved ones. A group whose
episodes all fail or all succeed has no reward spread: GRPO's advantages are zero there and it learns nothing from
it, while Skill-SD's teacher still scores the tokens. So the share of such groups says how much room a teacher
signal has beside GRPO's. Prints a Markdown table per task and the summary; run on a quiet machine.
"""

import json
import sys
import tempfile


def main(argv):
    import torch

    from skill_sd_trl.cli import parse_train_args
    from skill_sd_trl.rewards import REWARD_FUNCS, episode_reward_kwargs
    from skill_sd_trl.app.evaluation import load_for_eval
    from skill_sd_trl.rollout.multi_turn import ModelBackend, play_episodes

    json_path = None
    if "--json" in argv:
        i = argv.index("--json")
        json_path, argv = argv[i + 1], argv[:i] + argv[i + 2:]
    if "--output_dir" not in argv:
        argv = [*argv, "--output_dir", tempfile.mkdtemp(prefix="group-signal-")]
    script, args, model_args, _ = parse_train_args(argv)
    torch.manual_seed(args.seed)
    spec = script.spec
    tasks = script.train_tasks(spec.dataset(script.train_split or spec.train_split))
    model, tokenizer = load_for_eval(model_args.model_name_or_path, model_args.dtype or "float32")
    backend = ModelBackend(model, tokenizer, do_sample=True, temperature=args.temperature)
    group = args.num_generations
    rows = [dict(row) for row in tasks for _ in range(group)]
    records = []
    for start in range(0, len(rows), args.per_device_train_batch_size):  # one training step's rollouts at a time
        batch = rows[start:start + args.per_device_train_batch_size]
        _, recs = play_episodes([r["prompt"] for r in batch], batch, backend, spec.make_env,
                                script.limits(), args.max_completion_length, env_name=script.env_name)
        records += recs
    solved = [sum(bool(r["success"]) for r in records[i:i + group]) for i in range(0, len(records), group)]
    # GRPO's signal is a spread of the recipe's reward (which may be a partial score such as Comp.), not of success:
    # the recipe's own reward function, on what the rollout gives it
    scores = REWARD_FUNCS[script.reward](None, **episode_reward_kwargs(records))
    rewards = [[round(r, 4) for r in scores[i:i + group]] for i in range(0, len(scores), group)]
    lengths = tasks["solution_length"] if "solution_length" in tasks.column_names else [None] * len(tasks)
    print(f"| task | solution length | solved of {group} | rewards |\n|---|---|---|---|")
    for k, (n, length, rs) in enumerate(zip(solved, lengths, rewards, strict=True)):
        print(f"| {script.skip_train_samples + k} | {length} | {n} | {' '.join(f'{r:.2f}' for r in rs)} |")
    summary = {
        "tasks": len(solved), "group": group, "episodes_solved": sum(solved) / (group * len(solved)),
        "groups_all_failed": sum(n == 0 for n in solved) / len(solved),
        "groups_all_solved": sum(n == group for n in solved) / len(solved),
        "groups_with_spread": sum(0 < n < group for n in solved) / len(solved),
        "groups_with_reward_spread": sum(len(set(rs)) > 1 for rs in rewards) / len(rewards),
        "mean_reward": sum(map(sum, rewards)) / (group * len(rewards)),
    }
    print("\n" + ", ".join(f"{k}: {v:.3f}" if isinstance(v, float) else f"{k}: {v}" for k, v in summary.items()))
    if json_path:
        with open(json_path, "w", encoding="utf-8") as f:
            json.dump({"argv": argv, "summary": summary, "solved_per_task": solved, "rewards_per_task": rewards,
                       "task_ids": list(tasks["task_id"])}, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1:])
