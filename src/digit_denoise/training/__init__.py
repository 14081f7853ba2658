"""Training: :mod:`.config` (TrainConfig, recipe files, presets; no torch), :mod:`.flags` (the ``train``
flags), :mod:`.distributed` (device, precision, torchrun, compile), :mod:`.inputs` (what a run trains on),
:mod:`.runlog` (the run folder) and :mod:`.loop` (the loop: ``from digit_denoise.training.loop import train``).
"""
