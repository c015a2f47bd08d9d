"""Extensions of the promising layer: `Frozen`."""
