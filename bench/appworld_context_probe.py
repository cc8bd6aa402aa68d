"""Has the app world's teacher anything to teach? The training tasks scored with each teacher context, no training.

    python bench/appworld_context_probe.py --task-sets 0,1 --json bench/results/appworld_context_probe.json

The Skill-SD teacher is the student's own network with a context in its prompt; distillation can only move the student
toward what that context makes the network prefer. For every training task of the app-world experiment
(``recipes/appworld_offline/experiments/experiment_cpu.yaml``: compact prompt, 16 trained templates, one task per
template and task set) and each context, rendered exactly as the trainer renders the teacher's context:

* ``none``: the student's prompt (the teacher before any skill);
* ``own_skill``: the skill the experience summarizer writes once an episode has solved *this* task (its golden
  workflow is the solution as code): what the paper's bank holds for a task the student has solved once;
* ``sibling_skill``: the same summarizer's skill of a solved episode of the *same template on another world* (a
  demonstration world, disjoint from every train and dev world): what a bank shared per scenario and seeded from
  demonstrations holds, names and values of the other world included;
* ``ground_truth``: the task's reference solution (vanilla OPD's teacher).

Two measures per context: the mean log-probability per token of the task's reference answer (how much the context
makes the teacher expect the right code) and greedy single-turn Acc./Comp. (what the teacher itself would do). The RL
episodes have 2 turns; this is the first. Run on a quiet machine.
"""

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from context_probe import answer_logps, prompt_token_ids  # noqa: E402

KINDS = ("none", "own_skill", "sibling_skill", "ground_truth")
ENV_ARGS = {"prompt_style": "compact", "held_out_templates": 8, "tasks_per_template": 1}


def fenced(code: str) -> str:
    return f"```python\n{code.strip()}\n```"


def rows_of(task_set: int):
    """The training tasks of one task set, each with its answer and a solved demonstration of its template."""
    from skill_sd_trl.envs.registry import load_environment

    spec = load_environment("appworld_offline", {**ENV_ARGS, "seed": task_set})
    rows = [dict(r) | {"answer": fenced(r["ground_truth"])} for r in spec.dataset(spec.train_split)]
    # one demonstration per template, from the demonstration worlds (the warm start's family, seed 0): the ones a
    # recipe's `bank_demonstrations: 16` seeds its bank with
    demos = {spec.scenario_of(d["task_id"]): d for d in spec.demonstrations(len(rows), 0, [task_set])}
    return spec, [(r, demos[spec.scenario_of(r["task_id"])]) for r in rows]


def context_prompt(spec, row, demo, kind: str):
    from skill_sd_trl.method.config import DEFAULT_GROUND_TRUTH_TEMPLATE, DEFAULT_SKILL_TEMPLATE
    from skill_sd_trl.models.warmstart import solved_skill
    from skill_sd_trl.rollout.prompts import add_context_to_prompt

    if kind == "none":
        return row["prompt"]
    if kind == "ground_truth":
        return add_context_to_prompt(row["prompt"], row["ground_truth"], DEFAULT_GROUND_TRUTH_TEMPLATE)
    skill = solved_skill(spec, row if kind == "own_skill" else demo)
    return add_context_to_prompt(row["prompt"], skill, DEFAULT_SKILL_TEMPLATE)


def play_one_turn(spec, row, text: str):
    env = spec.make_env()
    try:
        env.reset(row)
        env.step(text)
        score = env.score()
    finally:
        env.close()
    return bool(score.success), float(score.completion)


def probe(model_name: str, pairs, spec_by_set, max_new_tokens: int):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from skill_sd_trl.models import resolve_model

    path = resolve_model(model_name)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    out = {}
    for kind in KINDS:
        per_task = []
        for task_set, row, demo in pairs:
            spec = spec_by_set[task_set]
            prompt_ids = prompt_token_ids(tokenizer, context_prompt(spec, row, demo, kind))
            answer_ids = tokenizer(row["answer"], add_special_tokens=False)["input_ids"]
            logp = answer_logps(model, prompt_ids, answer_ids).mean().item()
            with torch.no_grad():
                generated = model.generate(torch.tensor([prompt_ids]), max_new_tokens=max_new_tokens, do_sample=False,
                                           pad_token_id=tokenizer.eos_token_id)
            text = tokenizer.decode(generated[0, len(prompt_ids):], skip_special_tokens=True)
            success, completion = play_one_turn(spec, row, text)
            per_task.append({"task_id": row["task_id"], "task_set": task_set, "difficulty": row["difficulty"],
                             "prompt_tokens": len(prompt_ids), "answer_logp_per_token": logp, "success": success,
                             "completion": completion})
        n = len(per_task)
        out[kind] = {"answer_logp_per_token": sum(t["answer_logp_per_token"] for t in per_task) / n,
                     "acc": 100 * sum(t["success"] for t in per_task) / n,
                     "comp": 100 * sum(t["completion"] for t in per_task) / n, "tasks": n, "per_task": per_task}
        print(f"  {kind}: logp {out[kind]['answer_logp_per_token']:.3f}, Acc. {out[kind]['acc']:.1f}, "
              f"Comp. {out[kind]['comp']:.1f}", file=sys.stderr, flush=True)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-appworld-base")
    parser.add_argument("--task-sets", default="0,1")
    parser.add_argument("--max-new-tokens", type=int, default=256, help="the experiment's max_new_tokens_per_turn")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    import torch

    torch.manual_seed(0)
    spec_by_set, pairs = {}, []
    for task_set in (int(s) for s in args.task_sets.split(",")):
        spec, rows = rows_of(task_set)
        spec_by_set[task_set] = spec
        pairs += [(task_set, row, demo) for row, demo in rows]
    start = time.perf_counter()
    results = probe(args.model, pairs, spec_by_set, args.max_new_tokens)
    seconds = time.perf_counter() - start
    print(f"{len(pairs)} training tasks (task sets {args.task_sets}), {args.model}, one turn, greedy, "
          f"{seconds:.0f} s\n")
    print("| teacher context | reference answer log-prob / token | greedy Acc. | Comp. |\n|---|---|---|---|")
    for kind, r in results.items():
        print(f"| {kind} | {r['answer_logp_per_token']:.3f} | {r['acc']:.1f} % | {r['comp']:.1f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"model": args.model, "task_sets": args.task_sets, "env_args": ENV_ARGS,
                                               "seconds": seconds, "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
