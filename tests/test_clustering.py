"""Layer clustering: planted structure, K edge cases, validation, json, plots."""

import json
import logging

import matplotlib.image
import numpy as np
import pytest

from speechbrain_skill.layer_groups.clustering import (
    LINKAGES,
    cluster_layers,
    similarity_to_distance,
)
from speechbrain_skill.layer_groups.groups_file import (
    load_groups,
    save_groups,
    validate_groups,
)
from speechbrain_skill.layer_groups.plots import (
    cut_height,
    plot_dendrogram,
    plot_similarity_heatmap,
)

PLANTED = [[0, 1, 2], [3, 4, 5, 6], [7, 8], [9, 10, 11, 12]]


def planted_matrix(groups, within=0.9, between=0.3, noise=0.05, seed=0):
    size = sum(len(g) for g in groups)
    label = np.empty(size, dtype=int)
    for index, group in enumerate(groups):
        label[group] = index
    matrix = np.where(label[:, None] == label[None, :], within, between)
    rng = np.random.default_rng(seed)
    jitter = rng.uniform(-noise, noise, (size, size))
    matrix = matrix + (jitter + jitter.T) / 2
    np.fill_diagonal(matrix, 1.0)
    return matrix


@pytest.mark.parametrize("linkage", LINKAGES)
def test_recovers_planted_blocks_for_every_linkage(linkage):
    result = cluster_layers(planted_matrix(PLANTED), k=4, linkage=linkage)
    assert result.groups == PLANTED
    assert result.contiguous and not result.tie_break
    assert result.linkage_matrix.shape == (12, 4)
    assert result.labels.tolist() == [0] * 3 + [1] * 4 + [2] * 2 + [3] * 4


@pytest.mark.parametrize("linkage", LINKAGES)
def test_non_contiguous_groups_are_recovered_and_reported(linkage, caplog):
    planted = [[0, 1, 12], [2, 3, 4], [5, 6, 7, 8], [9, 10, 11]]
    with caplog.at_level(logging.WARNING):
        result = cluster_layers(planted_matrix(planted), k=4, linkage=linkage)
    assert result.groups == planted
    assert result.non_contiguous == [0] and not result.contiguous
    assert "not contiguous" in caplog.text
    assert "[not contiguous]" in result.summary()


def test_groups_are_sorted_and_ordered_by_smallest_layer():
    shuffled = [[4, 9, 10], [0, 5, 6, 12], [1, 2, 3], [7, 8, 11]]
    result = cluster_layers(planted_matrix(shuffled), k=4)
    assert result.groups == sorted(sorted(g) for g in shuffled)


def test_k_edge_cases():
    matrix = planted_matrix(PLANTED)
    assert cluster_layers(matrix, 1).groups == [list(range(13))]
    assert cluster_layers(matrix, 13).groups == [[i] for i in range(13)]
    assert cluster_layers(np.ones((1, 1)), 1).groups == [[0]]
    for bad in (0, 14, -1):
        with pytest.raises(ValueError, match=r"between 1 and .* \(13\)"):
            cluster_layers(matrix, bad)
    for bad in (2.5, True, "4"):
        with pytest.raises(ValueError, match="must be an integer"):
            cluster_layers(matrix, bad)
    assert cluster_layers(matrix, np.int64(4)).groups == PLANTED


@pytest.mark.parametrize(
    "matrix, message",
    [
        (np.ones((3, 4)), "square"),
        (np.ones(5), "square"),
        (np.zeros((0, 0)), "square"),
        (np.array([[1.0, np.nan], [np.nan, 1.0]]), "NaN"),
        (np.array([[1.0, 0.5], [0.4, 1.0]]), "not symmetric"),
        (np.array([[1.0, 1.5], [1.5, 1.0]]), r"\[-1, 1\]"),
        (np.array([[1.0, -2.0], [-2.0, 1.0]]), r"\[-1, 1\]"),
    ],
)
def test_bad_matrices_give_clear_errors(matrix, message):
    with pytest.raises(ValueError, match=message):
        cluster_layers(matrix, 1)


def test_unknown_linkage_and_ward_warning():
    matrix = planted_matrix(PLANTED)
    with pytest.raises(ValueError, match="Unknown linkage 'centroid'"):
        cluster_layers(matrix, 4, linkage="centroid")
    with pytest.warns(UserWarning, match="Euclidean"):
        cluster_layers(matrix, 4, linkage="ward")


@pytest.mark.parametrize("linkage", LINKAGES)
def test_tied_distances_still_give_k_groups(linkage, caplog):
    matrix = np.full((6, 6), 0.5)
    np.fill_diagonal(matrix, 1.0)
    with caplog.at_level(logging.WARNING):
        result = cluster_layers(matrix, 3, linkage=linkage)
    assert len(result.groups) == 3 and result.tie_break
    assert sorted(sum(result.groups, [])) == list(range(6))
    assert "Tied" in caplog.text


def test_rounding_above_one_is_clipped_to_zero_distance():
    matrix = np.array([[1.0, 1.0 + 1e-9], [1.0 + 1e-9, 1.0]])
    assert similarity_to_distance(matrix).tolist() == [0.0]
    assert cluster_layers(matrix, 2).groups == [[0], [1]]


def test_groups_json_round_trip(tmp_path):
    result = cluster_layers(planted_matrix(PLANTED), 4)
    path = tmp_path / "sub" / "groups.json"
    save_groups(path, result, {"teacher": "tiny", "num_utterances": 12})
    content = json.loads(path.read_text())
    assert content["format"] == "speechbrain_skill.layer_groups"
    assert content["groups"] == PLANTED and content["k"] == 4
    assert content["num_states"] == 13 and content["linkage"] == "average"
    assert content["contiguous"] is True and content["non_contiguous_groups"] == []
    assert content["metadata"] == {"teacher": "tiny", "num_utterances": 12}
    assert load_groups(path) == PLANTED
    save_groups(path, [[0, 2], [1]])
    assert json.loads(path.read_text())["non_contiguous_groups"] == [0]


def test_bad_group_files_give_clear_errors(tmp_path):
    path = tmp_path / "groups.json"
    with pytest.raises(ValueError, match="not found"):
        load_groups(path)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not valid json"):
        load_groups(path)
    path.write_text('{"k": 2}')
    with pytest.raises(ValueError, match="no 'groups'"):
        load_groups(path)
    path.write_text("[[0, 1], [13]]")
    with pytest.raises(ValueError, match="out of range"):
        load_groups(path, num_states=13)
    path.write_text('{"groups": [[0, 5]], "num_states": 4}')
    with pytest.raises(ValueError, match="out of range"):
        load_groups(path)
    for bad, message in [
        ([], "non-empty list"),
        ([[]], "non-empty list"),
        ([[0, "1"]], "integers"),
        ([[-1]], "out of range"),
        ([[0], [0]], "more than one group"),
    ]:
        with pytest.raises(ValueError, match=message):
            validate_groups(bad)


def test_cut_height_separates_k_groups():
    result = cluster_layers(planted_matrix(PLANTED), 4)
    heights = result.linkage_matrix[:, 2]
    line = cut_height(result.linkage_matrix, 4)
    assert (heights < line).sum() == 13 - 4
    assert cut_height(result.linkage_matrix, 1) is None
    assert cut_height(result.linkage_matrix, 13) is None


def test_plots_are_written_and_readable(tmp_path):
    planted = [[0, 1, 12], [2, 3, 4], [5, 6, 7, 8], [9, 10, 11]]
    matrix = planted_matrix(planted)
    result = cluster_layers(matrix, 4)
    heatmap = plot_similarity_heatmap(
        matrix, result.groups, tmp_path / "heatmap.png", "tiny: linear CKA, 12 utts"
    )
    dendrogram = plot_dendrogram(
        result.linkage_matrix, tmp_path / "dendrogram.png", "tiny", groups=result.groups
    )
    for path in (heatmap, dendrogram):
        image = matplotlib.image.imread(path)
        assert image.shape[0] > 300 and image.shape[1] > 300
        assert image[..., :3].std() > 0.05  # not a blank canvas
