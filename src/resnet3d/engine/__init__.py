"""The training engine: loops, schedules, checkpoints, processes, logs.

``resnet3d.engine.trainer.run(config)`` runs a whole training/validation run from a frozen
``resnet3d.config.Config``; the modules below it each do one thing (see their docstrings).
"""
