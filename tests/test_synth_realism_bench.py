"""bench/synth_realism.py's verdicts: the bars of issue 15, with intervals over generated people."""

from __future__ import annotations

import pandas as pd

from bench.synth_realism import TARGET_FOUND, bars_sentence, by_subject_interval


def _pictures(found_by_subject: dict[str, list[bool]]) -> pd.DataFrame:
    rows = [
        {"subject": s, "found": f, "assessed": f, "cva_deg": 40.0 + k, "ear_shoulder_angle": 50.0 + k}
        for s, flags in found_by_subject.items()
        for k, f in enumerate(flags)
    ]
    return pd.DataFrame(rows)


def test_the_interval_resamples_people_so_one_person_s_misses_widen_it() -> None:
    even = _pictures({f"s{i}": [True] * 9 + [False] for i in range(10)})  # every person 90 %
    lumped = _pictures({**{f"s{i}": [True] * 10 for i in range(9)}, "s9": [False] * 10})  # one person 0 %
    assert even["found"].mean() == lumped["found"].mean() == 0.9
    tight, wide = (
        by_subject_interval(even, lambda f: float(f["found"].mean())),
        by_subject_interval(lumped, lambda f: float(f["found"].mean())),
    )
    assert tight == [0.9, 0.9]  # the same share in every person: resampling people changes nothing
    assert wide is not None and wide[0] < 0.8 and wide[1] == 1.0
    assert by_subject_interval(_pictures({"s0": [True, False]}), lambda f: float(f["found"].mean())) is None


def test_the_verdict_says_when_a_bar_lies_inside_the_interval() -> None:
    views = {
        "side": {
            "person_found": 0.97,
            "person_found_interval": [0.95, 0.99],
            "r_with_cva": {"ear_shoulder_angle": 0.59},
            "ear_shoulder_r_interval": [0.5, 0.66],
        },
        "oblique": {"person_found": 0.933, "person_found_interval": [0.9, 0.96]},
    }
    text = bars_sentence(views)
    assert f"≥ {TARGET_FOUND:.0%} of every view: not met (lowest 93.3%, oblique [0.900, 0.960]" in text
    assert "within sampling noise" in text.split("side-view")[0]  # 0.95 lies in [0.90, 0.96]
    assert "r ≥ 0.7: not met (r = 0.59 [0.50, 0.66])" in text and "noise" not in text.split("side-view")[1]
    views["oblique"] = {"person_found": 0.99, "person_found_interval": [0.97, 1.0]}
    assert "every view: met (lowest 97.0%, side [0.950, 0.990]; the bar lies inside it" in bars_sentence(views)
