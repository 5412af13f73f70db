"""SUPERB score (leaderboard reproduction) and the metrics of PR, SF and QbE."""

import pytest

from speechbrain_skill.downstream.superb_metrics import (
    edit_distance,
    error_rate,
    maximum_term_weighted_value,
    parse_slots,
    slot_type_f1,
    slot_value_cer,
    term_weighted_value,
    twv_beta,
)
from speechbrain_skill.downstream.superb_score import (
    PUBLISHED,
    SUPERB_TASKS,
    superb_score,
)


@pytest.mark.parametrize(
    "model, expected",
    [("WavLM Base+", 1106), ("DPWavLM", 926), ("DPHuBERT", 866), ("DistilHuBERT", 717)],
)
def test_published_rows_give_the_leaderboard_scores(model, expected):
    result = superb_score(PUBLISHED[model]["metrics"])
    assert result["complete"] and not result["missing"]
    assert abs(result["score"] - expected) <= 1


def test_partial_score_names_the_missing_tasks():
    metrics = dict(PUBLISHED["DPHuBERT"]["metrics"])
    del metrics["asv"], metrics["sd"]
    result = superb_score(metrics)
    assert not result["complete"] and result["missing"] == ["asv", "sd"]
    # Mean over the eight scored tasks only.
    assert len(result["tasks"]) == 8
    assert result["score"] == pytest.approx(sum(result["tasks"].values()) / 8)
    assert set(SUPERB_TASKS) == set(result["tasks"]) | {"asv", "sd"}


def test_reference_points_map_to_0_and_1000():
    fbank = {
        "pr": {"PER": 82.01},
        "qbe": {"MTWV": 0.0058},
        "sf": {"slot_type_f1": 69.64, "slot_value_cer": 52.94},
    }
    sota = {
        "pr": {"PER": 3.53},
        "qbe": {"MTWV": 0.0736},
        "sf": {"slot_type_f1": 89.81, "slot_value_cer": 21.76},
    }
    assert superb_score(fbank)["score"] == pytest.approx(0.0, abs=1e-9)
    assert superb_score(sota)["score"] == pytest.approx(1000.0)


def test_per_is_edit_distance_over_reference_phones():
    # Hand-worked: "HH AH0 L OW1" vs "HH EH0 L OW1 W" -> 1 sub + 1 ins;
    # "K AE1 T" vs "K AE1 T" -> 0; total 2 edits / 7 reference phones.
    hyps = [["HH", "EH0", "L", "OW1", "W"], ["K", "AE1", "T"]]
    refs = [["HH", "AH0", "L", "OW1"], ["K", "AE1", "T"]]
    assert edit_distance(hyps[0], refs[0]) == 2
    assert error_rate(hyps, refs) == pytest.approx(100 * 2 / 7)
    assert edit_distance([], ["A", "B"]) == 2 and edit_distance(["A"], []) == 1


def test_slot_f1_and_cer_on_hand_made_tags():
    refs = [
        "set an alarm for B-time seven am E-time",
        "play B-artist queen E-artist on B-service spotify E-service",
        "hello there",
    ]
    hyps = [
        "set an alarm for B-time seven pm E-time",  # right type, 1 char wrong
        "play B-artist quen E-artist on spotify",  # service missed
        "hello there",  # no slot either side: F1 = 1
    ]
    assert parse_slots(refs[1]) == {"artist": ["queen"], "service": ["spotify"]}
    # F1 per utterance: 1, 2*1*0.5/1.5 = 2/3, 1 -> mean 8/9.
    assert slot_type_f1(hyps, refs) == pytest.approx(100 * (1 + 2 / 3 + 1) / 3)
    # CER pairs: "seven pm"/"seven am" 1 edit (8 chars), "quen"/"queen" 1 (5),
    # ""/"spotify" 7 (7): 9 / 20.
    assert slot_value_cer(hyps, refs) == pytest.approx(100 * 9 / 20)
    # Of two hypothesis values of the type, the closer one counts.
    two = ["B-time seven pm E-time B-time seven am E-time"]
    assert slot_value_cer(two, [refs[0]]) == 0.0


def test_mtwv_hand_worked_case():
    # Two queries, four documents. q occurs in d1 and d2, r in d3.
    scores = {
        ("q", "d1"): 0.9,
        ("q", "d2"): 0.4,
        ("q", "d3"): 0.6,
        ("q", "d4"): 0.1,
        ("r", "d1"): 0.2,
        ("r", "d2"): 0.3,
        ("r", "d3"): 0.7,
        ("r", "d4"): 0.5,
    }
    truth = {("q", "d1"), ("q", "d2"), ("r", "d3")}
    beta = 2.0
    # Threshold 0.7: q detects d1 (P_miss 1/2, P_fa 0); r detects d3 (0, 0).
    # TWV = 1 - (1/2 + 0) / 2 = 0.75.
    assert term_weighted_value(scores, truth, 0.7, beta) == pytest.approx(0.75)
    # Threshold 0.4: q detects d1, d2, d3 (P_miss 0, P_fa 1/2 -> 2 x 1/2 = 1);
    # r detects d3, d4 (P_miss 0, P_fa 1/3 -> 2/3). TWV = 1 - (1 + 2/3) / 2.
    assert term_weighted_value(scores, truth, 0.4, beta) == pytest.approx(1 / 6)
    # Every threshold by hand: 0.9 -> 1-(0.5+1)/2 = 0.25; 0.7 -> 0.75;
    # 0.6 -> q: miss 1/2, fa 1/2 -> 1.5; r: 0 -> 0.25; 0.5 -> q 1.5, r 2/3
    # -> <0; lower ones worse. Best: 0.75 at 0.7.
    assert maximum_term_weighted_value(scores, truth, beta) == (
        pytest.approx(0.75),
        0.7,
    )
    # Nothing detectable: MTWV 0 (the no-detection threshold).
    flat = {key: 0.5 for key in scores}
    assert maximum_term_weighted_value(flat, truth, beta=100.0)[0] == 0.0
    # The QUESST 2014 weight: C_fa / C_miss x (1 / P_target - 1).
    assert twv_beta(0.0008, 100.0, 1.0) == pytest.approx(1249 / 100)
