"""Recipe fields that are not trainer or model settings: the environment (:class:`EnvArguments`), skills and
evaluation (the `train` command)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..envs.arguments import EnvArguments

REWARDS = ("env", "success", "completion")
SKILL_SOURCES = ("bank", "column", "none")
SUMMARIZERS = ("experience", "transformers", "openai", "none")
SKILL_GRANULARITIES = ("trajectory", "group")
BANK_SCOPES = ("task", "scenario")


@dataclass
class SkillSDScriptArguments(EnvArguments):
    """Environment (inherited), method, skill pipeline and evaluation settings of a recipe."""

    method: str | None = field(
        default=None,
        metadata={"help": "The method this recipe runs (grpo, skill_sd, skill_augmented_grpo, vanilla_opd, "
                          "frozen_teacher, off_policy, off_policy_frozen): fills in its options (docs/recipes.md); "
                          "the recipe's own keys win."},
    )
    reward: str = field(
        default="env",
        metadata={"help": "Training reward: the env's shaped return, success (Acc.) or completion (Comp.).",
                  "choices": list(REWARDS)},
    )
    skill_source: str = field(
        default="bank",
        metadata={"help": "Where the teacher's skills come from: the summarizer-fed skill bank, a dataset column "
                          "(`skill_column`), or none.", "choices": list(SKILL_SOURCES)},
    )
    summarizer: str = field(
        default="experience",
        metadata={"help": "Skill summarizer: experience (programmatic, offline), transformers (a local model), "
                          "openai (any OpenAI-compatible endpoint), or none: no episode is summarized and the bank "
                          "keeps the skills it started with (bank_path, bank_demonstrations), a fixed curated bank.",
                  "choices": list(SUMMARIZERS)},
    )
    summarizer_model: str | None = field(
        default=None,
        metadata={"help": "Summarizer model: a path/Hub id/embedded alias (transformers) or a served model name (openai)."},
    )
    summarizer_base_url: str | None = field(default=None, metadata={"help": "Base URL of the OpenAI-compatible API."})
    summarizer_api_key_env: str = field(
        default="OPENAI_API_KEY", metadata={"help": "Environment variable holding the summarizer API key."}
    )
    summarizer_prompt: str | None = field(
        default=None,
        metadata={"help": "Override of the summary prompt for LLM summarizers: the template text itself, or a path to a "
                          "file holding it (placeholders: see docs/skills.md)."},
    )
    summarizer_timeout: float = field(default=300.0, metadata={"help": "Seconds one summarizer call may take."})
    summarizer_wait: float = field(
        default=0.0,
        metadata={"help": "Seconds each step waits for its skills before training goes on. 0 (default): summarization "
                          "overlaps training (the paper's asynchronous setting); > 0: reproducible runs, whatever the "
                          "summarizer's speed (seeded experiments)."},
    )
    skill_granularity: str = field(
        default="trajectory",
        metadata={"help": "What one skill summarizes: trajectory (the paper's: every finished episode gets its own "
                          "skill, written about it with the rest of its task's group as contrast) or group (one skill "
                          "per task per step over the whole group).", "choices": list(SKILL_GRANULARITIES)},
    )
    bank_strategy: str = field(default="ucb", metadata={"help": "Skill retrieval: ucb, latest or best."})
    bank_scope: str = field(
        default="task",
        metadata={"help": "Which tasks share skills. task (the paper's): every task has its own skills, UCB1 scores "
                          "them per task, and a task has none until one of its own episodes is summarized. scenario: "
                          "skills are stored, retrieved and scored per scenario, a family of related tasks the "
                          "environment names (EnvSpec.scenario_of; the offline app world: a task's template), so a "
                          "skill written about one task conditions the teacher on its siblings and on tasks new to "
                          "the run; bank_capacity and de-duplication then count per scenario. Needs an environment "
                          "with scenarios (appworld_offline; not sokoban). Skills written about one task can carry "
                          "its world's names and answers: docs/skills.md, Bank scope.",
                  "choices": list(BANK_SCOPES)},
    )
    bank_capacity: int = field(default=8, metadata={"help": "Skills kept per task (per scenario with bank_scope: "
                                                            "scenario)."})
    ucb_c: float = field(default=1.0, metadata={"help": "UCB1 exploration constant c."})
    bank_path: str | None = field(
        default=None,
        metadata={"help": "A skill bank JSON to start from (its own capacity, strategy and ucb_c apply; it must have "
                          "been saved with the same bank_scope)."},
    )
    bank_demonstrations: int = field(
        default=0,
        metadata={"help": "Seed the bank with the skills of this many solved demonstration episodes, round robin over "
                          "the training scenarios: the environment's own demonstrations (EnvSpec.demonstrations: "
                          "reference solutions on worlds disjoint from every train and dev task; the calibrated "
                          "base's warm-start worlds), each played by the real environment and written up by the "
                          "experience summarizer, so the teacher holds a working workflow from step 1. Needs "
                          "bank_scope: scenario (a demonstration is never a training task)."},
    )
    rollout_kv_cache: bool = field(
        default=True,
        metadata={"help": "With transformers generation (no vLLM): keep each episode's KV cache between turns and encode "
                          "each group's prompt once; false: re-encode every context each turn (TRL's own sampler)."},
    )
    eval_only: bool = field(
        default=False, metadata={"help": "Skip training: evaluate the model as it is (the base-model row of the table)."}
    )
    evaluate_after_training: bool = field(
        default=True, metadata={"help": "Evaluate the base and the trained model and print the Acc./Comp. table."}
    )
    tiny_model: bool = field(
        default=False,
        metadata={"help": "Replace the model by a tiny random offline model (dry runs and tests of recipes)."},
    )

    def __post_init__(self):
        if self.method is not None:
            from .methods import method_named

            method_named(self.method)
        super().__post_init__()
        for name, choices in (("reward", REWARDS), ("skill_source", SKILL_SOURCES),
                              ("summarizer", SUMMARIZERS), ("skill_granularity", SKILL_GRANULARITIES),
                              ("bank_strategy", ("ucb", "latest", "best")), ("bank_scope", BANK_SCOPES)):
            value = getattr(self, name)
            if value not in choices:
                raise ValueError(f"{name}={value!r} is not valid; choose one of {', '.join(map(repr, choices))}.")
        if self.bank_scope == "scenario" and self.spec.scenario_of is None:
            raise ValueError(f"bank_scope='scenario' needs an environment that groups its tasks into scenarios "
                             f"(EnvSpec.scenario_of); {self.spec.name} has none: use bank_scope: task.")
        if self.bank_demonstrations < 0:
            raise ValueError(f"bank_demonstrations={self.bank_demonstrations}: give a count >= 0 (0: none).")
        if self.bank_demonstrations and self.bank_scope != "scenario":
            raise ValueError(f"bank_demonstrations={self.bank_demonstrations} needs bank_scope: scenario (a "
                             "demonstration's world is never a training task's, so only a scenario's bank can hand "
                             "its skill to the training tasks); set bank_scope: scenario or drop bank_demonstrations.")
        if self.bank_demonstrations and self.spec.demonstrations is None:
            raise ValueError(f"bank_demonstrations={self.bank_demonstrations}: environment {self.spec.name} has no "
                             "demonstrations (EnvSpec.demonstrations); drop bank_demonstrations.")
        if (self.summarizer == "none" and self.skill_source == "bank" and not self.bank_path
                and not self.bank_demonstrations):
            raise ValueError("summarizer='none' keeps the bank as it starts, but this recipe starts it empty: give "
                             "bank_path or bank_demonstrations, or choose a summarizer (experience).")
        if self.summarizer == "openai" and not (self.summarizer_base_url and self.summarizer_model):
            raise ValueError("summarizer='openai' needs summarizer_base_url and summarizer_model.")
