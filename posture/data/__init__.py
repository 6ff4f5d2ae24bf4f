"""The dataset as training and prediction both see it: the class names, the labeling team's CVA rule
and agreement check, the manifest-backed dataset, and the preprocessing transforms."""
