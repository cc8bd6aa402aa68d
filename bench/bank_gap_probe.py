"""Does the teacher, shown the skills a run's bank really held, favour the answers that solved the task?

    python bench/bank_gap_probe.py --bank bench/results/sokoban_cpu_ctx/cells/skill_sd/seed0-tasks0/skill_bank.json \
        --model smollm2-135m-sokoban-base-ctx --json bench/results/bank_gap_probe_ctx_seed0.json

For every training task of the bank (Sokoban, the preset and level seed given), the answer is the shortest solution
the bank's skills record (``<answer>...</answer>`` and the end-of-turn token, one turn: what a solved single-turn
rollout's tokens are). It is scored by the model under the plain prompt (the student) and under the prompt with each
of the task's skills, rendered with the trainer's default skill template (the teacher, the same weights). The mean
teacher − student log-prob per token is the trainer's ``teacher/logp_gap`` on such a rollout; it is split by whether
the skill's golden workflow is that answer, another solution, or an unsolved attempt, and given per token. The same
for the answer of its first move alone (the first turn of a rollout that solves the task over several turns).

One-turn and at the bank's model's starting weights: the trainer's teacher scores multi-turn rollouts with the
latest student's weights. Run on a quiet machine; it prints the figures and with ``--json`` writes them.
"""

import argparse
import collections
import json
import re
import time


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bank", required=True, help="a cell's skill_bank.json")
    parser.add_argument("--model", default="smollm2-135m-sokoban-base-ctx")
    parser.add_argument("--preset", default="small")
    parser.add_argument("--level-seed", type=int, default=0)
    parser.add_argument("--prompt-style", default="compact")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from skill_sd_trl.method.config import DEFAULT_SKILL_TEMPLATE
    from skill_sd_trl.envs.sokoban.dataset import level_pool, resolve_preset, build_prompt
    from skill_sd_trl.models import resolve_model
    from skill_sd_trl.rollout.prompts import add_context_to_prompt
    from skill_sd_trl.skills.schema import Skill

    from context_probe import answer_logps, prompt_token_ids  # bench/ is the script's folder, first on sys.path

    start = time.perf_counter()
    preset = resolve_preset(args.preset)
    train = level_pool(preset, args.level_seed)[0]
    path = resolve_model(args.model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    end_of_turn = tokenizer.convert_tokens_to_ids("<|im_end|>")
    with open(args.bank, encoding="utf-8") as f:
        tasks = json.load(f)["tasks"]

    def scored(prompt, answer_ids):
        return answer_logps(model, prompt_token_ids(tokenizer, prompt), answer_ids)

    by_kind, by_token, skipped = collections.defaultdict(list), collections.defaultdict(list), 0
    for task_id, task in tasks.items():
        level = train[int(task_id.split("-")[3])]  # sokoban-<preset>-train-<index>-<digest>
        solutions = [m.group(0) for e in task["entries"] if "Shortest solution" in e["skill"]["golden_workflow"]
                     for m in [re.search(r"<answer>.*?</answer>", e["skill"]["golden_workflow"], re.S)] if m]
        if not solutions:  # never solved in the run: no solved answer to score
            skipped += 1
            continue
        answer = min(solutions, key=len)
        first_move = f"<answer>{answer[len('<answer>'):-len('</answer>')].split(' || ')[0]}</answer>"
        plain = build_prompt(level, preset.max_steps, args.prompt_style)
        for form, text in (("whole solution", answer), ("first move only", first_move)):
            answer_ids = tokenizer(text, add_special_tokens=False)["input_ids"] + [end_of_turn]
            student = scored(plain, answer_ids)
            for entry in task["entries"]:
                skill = Skill.from_dict(entry["skill"])
                teacher = scored(add_context_to_prompt(plain, skill.to_text(), DEFAULT_SKILL_TEMPLATE), answer_ids)
                gap = teacher - student
                kind = ("workflow is this solution" if answer in skill.golden_workflow
                        else "workflow is another solution" if "Shortest solution" in skill.golden_workflow
                        else "workflow is an unsolved attempt")
                by_kind[f"{form}; {kind}"].append(gap.mean().item())
                for token, g in zip(answer_ids, gap.tolist()):
                    by_token[f"{form}: {tokenizer.decode([token])}"].append(g)

    def summary(values):
        return {"mean": sum(values) / len(values), "n": len(values)}

    out = {"bank": args.bank, "model": args.model, "preset": args.preset, "level_seed": args.level_seed,
           "tasks_without_a_solution": skipped, "gap_per_token_by_skill": {k: summary(v) for k, v in by_kind.items()},
           "gap_by_token": {k: summary(v) for k, v in sorted(by_token.items(), key=lambda kv: sum(kv[1]) / len(kv[1]))},
           "seconds": time.perf_counter() - start}
    print(f"{args.model}, bank {args.bank}: {len(tasks) - skipped} solved tasks ({out['seconds']:.0f} s)\n")
    print("| answer; teacher's skill | skills | teacher − student log-prob / token |\n|---|---|---|")
    for kind, s in out["gap_per_token_by_skill"].items():
        print(f"| {kind} | {s['n']} | {s['mean']:+.3f} |")
    print("\nper token:", ", ".join(f"{k!r} {s['mean']:+.2f}" for k, s in out["gap_by_token"].items()))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
