"""Training: the Trainer subclasses, the runs of a student and a teacher, checkpoints, EMA, NaN guard."""
