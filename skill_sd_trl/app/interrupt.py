"""Ctrl-C during training: finish the step, save a resumable checkpoint, stop cleanly.

The first Ctrl-C (SIGINT) only raises a flag; at the end of the running optimizer step the callback asks the
``Trainer`` to save a checkpoint (adapter, optimizer, scheduler, RNG, trainer state, and through
``SkillSDTrainer.save_model`` the teacher and the skill bank) and to stop. A second Ctrl-C aborts at once, as
Python normally does. The handler is installed in each process's main thread; under ``accelerate launch`` the ranks
agree at every step end (a one-number all-reduce), so all of them save and stop at the same step even when the
signal reached them at different moments.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR


class GracefulInterrupt(TrainerCallback):
    def __init__(self):
        self.requested = False
        self.stopped_at: int | None = None  # the step whose checkpoint was saved, once stopped
        self._previous = None

    @property
    def interrupted(self) -> bool:
        return self.stopped_at is not None

    def checkpoint_dir(self, output_dir: str) -> str | None:
        return None if self.stopped_at is None else os.path.join(output_dir, f"{PREFIX_CHECKPOINT_DIR}-{self.stopped_at}")

    def _handle(self, signum, frame):
        if self.requested:  # the second Ctrl-C: abort now
            raise KeyboardInterrupt
        self.requested = True
        print("\nCtrl-C: finishing this step, then saving a checkpoint (press Ctrl-C again to abort without saving).",
              file=sys.stderr, flush=True)

    def on_train_begin(self, args, state, control, **kwargs):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)

    def on_step_end(self, args, state, control, **kwargs):
        if self.stopped_at is None and _any_rank(self.requested, args.device):
            control.should_save = True  # the Trainer saves checkpoint-<step> right after this hook
            control.should_training_stop = True
            self.stopped_at = state.global_step
        return control

    def on_train_end(self, args, state, control, **kwargs):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


def _any_rank(flag: bool, device) -> bool:
    """``flag`` of any process (a collective: every rank calls it at the same step end); ``flag`` in one process."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())
