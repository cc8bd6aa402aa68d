"""Only ``skill_sd_trl/trl_private.py`` touches TRL's private surface: no other module of the package names a private
TRL method, attribute or helper in its code (comments and docstrings aside), imports from a TRL submodule, or reads
one of GRPOTrainer's undocumented attributes off a trainer. The one exception: SkillSDTrainer's overrides, whose
``def`` and ``super()`` call name the hook they override (each listed in ``trl_private.CONTRACT``)."""

import ast
from pathlib import Path

from skill_sd_trl.trl_private import CONTRACT

PACKAGE = Path(__file__).resolve().parent.parent / "skill_sd_trl"
TRAINER = PACKAGE / "method" / "trainer.py"

OVERRIDES = {e.word for e in CONTRACT if e.use == "override"}
#: Words of the table that are also public names (config fields, Trainer methods, our own attributes): they count only
#: as an attribute read off a trainer (``trainer.use_vllm``; ``self.use_vllm`` inside the trainer).
TRAINER_ATTRIBUTES = {"eos_token_ids", "chat_template", "chat_template_kwargs", "generation_config",
                      "generation_kwargs", "use_vllm", "max_completion_length", "rollout_func", "loss_type",
                      "reward_weights"}
PUBLIC_WORDS = {"__init__", "compute_loss", "save_model", "create_model_card", "log", "pad"}
#: Identifiers that are private wherever they appear in code.
PRIVATE_NAMES = ({e.word for e in CONTRACT} - TRAINER_ATTRIBUTES - PUBLIC_WORDS) | {
    "fused_lm_head", "use_transformers_continuous_batching"}


def private_uses(source: str, is_trainer: bool) -> list[str]:
    """``line: what`` for each private TRL use in ``source``."""
    tree = ast.parse(source)
    allowed = set()
    if is_trainer:  # an override's own name: `def _generate(...)` and `super()._generate(...)` inside it
        for fn in ast.walk(tree):
            if isinstance(fn, ast.FunctionDef) and fn.name in OVERRIDES:
                allowed.add(id(fn))
                allowed.update(id(n) for n in ast.walk(fn) if isinstance(n, ast.Attribute) and n.attr == fn.name
                               and isinstance(n.value, ast.Call) and getattr(n.value.func, "id", None) == "super")
    trainer_names = {"trainer", "self"} if is_trainer else {"trainer"}
    found = []
    for node in ast.walk(tree):
        if id(node) in allowed:
            continue
        words = []
        if isinstance(node, ast.Attribute):
            words.append(node.attr)
            base = getattr(node.value, "id", None)
            if node.attr in TRAINER_ATTRIBUTES and base in trainer_names:
                found.append((node.lineno, f"{base}.{node.attr}"))
        elif isinstance(node, ast.Name):
            words.append(node.id)
        elif isinstance(node, ast.keyword) and node.arg:
            words.append(node.arg)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            words.append(node.value)  # getattr(trainer, "vllm_generation")
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            words.append(node.name)
        elif isinstance(node, ast.ImportFrom):
            if (node.module or "").startswith("trl."):
                found.append((node.lineno, f"from {node.module} import"))
            words += [a.name for a in node.names if node.module and node.module.split(".")[0] == "trl"]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, f"import {a.name}") for a in node.names if a.name.startswith("trl.")]
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "getattr" and len(node.args) >= 2:
            base, name = getattr(node.args[0], "id", None), getattr(node.args[1], "value", None)
            if base in trainer_names and name in TRAINER_ATTRIBUTES:
                found.append((node.lineno, f"getattr({base}, {name!r})"))
        found += [(getattr(node, "lineno", 0), w) for w in words if w in PRIVATE_NAMES]
    return [f"{line}: {what}" for line, what in sorted(set(found))]


def test_no_module_but_trl_private_touches_private_trl():
    offenders = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path != PACKAGE / "trl_private.py":
            uses = private_uses(path.read_text(encoding="utf-8"), is_trainer=path == TRAINER)
            if uses:
                offenders[str(path.relative_to(PACKAGE))] = uses
    assert not offenders, f"TRL's private surface used outside skill_sd_trl/trl_private.py: {offenders}"


def test_the_checker_sees_each_kind_of_private_use():
    probe = '''
"""A docstring may name _generate_single_turn and trainer._metrics."""
from trl import GRPOTrainer
from trl.trainer.utils import pad
import trl.models.utils

def sample(trainer, ids):
    # a comment may name vllm_generation
    trainer._generate_single_turn(ids, None, {}, num_generations=1)
    cap = getattr(trainer, "vllm_generation", None)
    eos = trainer.eos_token_ids
    vllm = getattr(trainer, "use_vllm", False)
    out = model(input_ids=ids, labels=ids, fused_lm_head=True)
    return trainer.args.max_completion_length, trainer.processing_class
'''
    assert private_uses(probe, is_trainer=False) == [
        "4: from trl.trainer.utils import", "5: import trl.models.utils", "9: _generate_single_turn",
        "10: vllm_generation", "11: trainer.eos_token_ids", "12: getattr(trainer, 'use_vllm')", "13: fused_lm_head",
    ]


def test_the_trainer_may_name_only_the_hooks_it_overrides_in_their_own_def():
    probe = '''
class T(GRPOTrainer):
    def _generate(self, prompts):
        return super()._generate(prompts)

    def _calculate_rewards(self, *a):
        self._generate(a)
        return super()._tokenize_prompts(a), self.loss_type, self._metrics
'''
    assert private_uses(probe, is_trainer=True) == [
        "7: _generate", "8: _metrics", "8: _tokenize_prompts", "8: self.loss_type"]
    assert private_uses(probe, is_trainer=False) == [
        "3: _generate", "4: _generate", "6: _calculate_rewards", "7: _generate", "8: _metrics", "8: _tokenize_prompts"]
