"""Train/val/test assignment that keeps every subject in one split and each split's class mix close.

Frames of one person in train and test inflate accuracy (identity leakage), so whole subjects are
assigned. A seeded greedy bin-packing does it: subjects in descending size (ties in seeded random
order) go to the split whose per-class counts move closest to their targets. Unlike k-fold
splitters it honours arbitrary ratios, and it degrades gracefully on tiny drops.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from posture.io.formats import SPLITS


def assign_splits(
    subjects: Sequence[str], labels: Sequence[str], ratios: Sequence[float], seed: int, classes: Sequence[str]
) -> tuple[list[str], list[str]]:
    """Return ``(split per item, warnings)``; no subject appears in two splits."""
    warnings: list[str] = []
    if not subjects:
        return [], warnings
    class_index = {c: i for i, c in enumerate(classes)}
    extra = sorted(set(labels) - set(class_index))
    for c in extra:
        class_index[c] = len(class_index)
    groups = sorted(set(subjects))
    gidx = {g: i for i, g in enumerate(groups)}
    counts = np.zeros((len(groups), len(class_index)), dtype=np.int64)
    for s, lbl in zip(subjects, labels, strict=True):
        counts[gidx[s], class_index[lbl]] += 1

    ratio = np.asarray(ratios, dtype=np.float64)
    active = [k for k in range(len(SPLITS)) if ratio[k] > 0]
    target = ratio[:, None] * counts.sum(axis=0)[None, :]
    weight = 1.0 / (target + 1.0)  # a miss on a small split costs as much as on a big one
    assigned = np.zeros_like(target)

    rng = np.random.default_rng(seed)
    shuffled = rng.permutation(len(groups))
    sizes = counts.sum(axis=1)
    order = shuffled[np.argsort(-sizes[shuffled], kind="stable")]
    where = np.full(len(groups), -1)
    for g in order:
        best_k, best_cost = active[0], np.inf
        for k in active:
            before = ((assigned[k] - target[k]) ** 2 * weight[k]).sum()
            after = ((assigned[k] + counts[g] - target[k]) ** 2 * weight[k]).sum()
            if after - before < best_cost:
                best_k, best_cost = k, after - before
        where[g] = best_k
        assigned[best_k] += counts[g]

    if len(groups) < len(active):
        warnings.append(
            f"only {len(groups)} subject(s) for {len(active)} splits: some splits stay empty "
            "(a split without leakage needs at least one subject per split)"
        )
    _fill_empty_splits(where, sizes, active, ratio)

    for k in active:
        members = where == k
        if members.any():
            present = counts[members].sum(axis=0)
            missing = [c for c, i in class_index.items() if present[i] == 0 and counts[:, i].sum() > 0]
            if missing:
                warnings.append(
                    f"split {SPLITS[k]} has no {', '.join(missing)} image (too few subjects of that class to spread)"
                )
    splits = [SPLITS[where[gidx[s]]] for s in subjects]
    return splits, warnings


def _fill_empty_splits(where: np.ndarray, sizes: np.ndarray, active: list[int], ratio: np.ndarray) -> None:
    """Give empty splits a subject each, the smallest from the most crowded split, while it has two.

    Bigger shares first, and test before val: with two subjects a leakage-free test set is worth
    more than a validation set.
    """
    preference = {0: 0, 2: 1, 1: 2}
    for k in sorted(active, key=lambda j: (-ratio[j], preference[j])):
        if (where == k).any():
            continue
        donor = max(active, key=lambda j: int((where == j).sum()))
        members = np.flatnonzero(where == donor)
        if len(members) < 2:
            return
        where[members[np.argmin(sizes[members])]] = k  # first on ties
