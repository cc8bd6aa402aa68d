"""The application: recipes, the ``train``/``eval``/``report`` commands and their parts.

- :mod:`.recipe`, :mod:`.script_args`: ``--config recipe.yaml`` plus flags into typed dataclasses, one-line errors.
- :mod:`.train`: a recipe wired into a trainer (model, environment, rollouts, reward, skill bank, summarizer).
- :mod:`.evaluation`: the Acc./Comp. table. :mod:`.report`: PNG curves. :mod:`.interrupt`: Ctrl-C checkpoints.
"""
