"""kNN imputation of missing vertebrae: the alignment, the fill, and datasets/impute_missing.py."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from xvfa_ext.gsq import morphometry
from xvfa_ext.imputation import impute_spine, similarity_transform
from xvfa_ext.synthetic import SyntheticConfig, generate_image, image_seed
from xvfa_ext.synthetic_dataset import write_synthetic_dataset

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "datasets" / "impute_missing.py"


def _transform(points, angle, scale, shift, mirror=False):
    c, s = np.cos(angle), np.sin(angle)
    r = np.array([[c, -s], [s, c]]) @ (np.diag([-1.0, 1.0]) if mirror else np.eye(2))
    return scale * points @ r.T + shift


@pytest.mark.parametrize("mirror", [False, True])
def test_a_spine_that_is_a_moved_copy_of_a_reference_gets_that_references_vertebra(mirror):
    _, vertebrae = generate_image(image_seed(3, 0), SyntheticConfig())
    reference = {v.level: v.keypoints for v in vertebrae}
    moved = {level: _transform(p, 0.3, 1.7, np.array([40.0, -25.0]), mirror) for level, p in reference.items()}
    spine = {level: moved[level] for level in ("T6", "T9", "L2")}
    _, residual = similarity_transform(np.concatenate(list(reference.values())), np.concatenate(list(moved.values())))
    assert residual < 1e-9
    fills = impute_spine(spine, {"ref": reference}, ["T4", "T6", "L4"], k=1)
    assert set(fills) == {"T4", "L4"}  # a read level is never filled
    for level in ("T4", "L4"):
        np.testing.assert_allclose(fills[level].keypoints, moved[level], atol=1e-6)
        assert fills[level].neighbours == ["ref"]


def test_the_nearest_references_are_chosen_and_averaged():
    _, a = generate_image(image_seed(4, 0), SyntheticConfig())
    _, b = generate_image(image_seed(4, 1), SyntheticConfig())
    spine_a = {v.level: v.keypoints for v in a}
    spine_b = {v.level: v.keypoints for v in b}
    target = {level: spine_a[level] for level in ("T5", "T8", "T11")}
    fills = impute_spine(target, {"a": spine_a, "b": spine_b}, ["L1"], k=1)
    assert fills["L1"].neighbours == ["a"] and fills["L1"].distances[0] < 1e-9
    both = impute_spine(target, {"a": spine_a, "b": spine_b}, ["L1"], k=2)["L1"]
    assert both.neighbours == ["a", "b"] and both.distances[1] > 0
    mapped_b = similarity_transform(np.concatenate([spine_b[v] for v in ("T11", "T5", "T8")]),
                                    np.concatenate([target[v] for v in ("T11", "T5", "T8")]))[0](spine_b["L1"])
    np.testing.assert_allclose(both.keypoints, (spine_a["L1"] + mapped_b) / 2, atol=1e-6)
    assert impute_spine(target, {"a": spine_a}, ["L1"], k=1, exclude="a") == {}


def test_fills_of_synthetic_spines_are_within_a_fifth_of_a_height_of_the_truth(measured):
    """Missing levels of 20 spines, from 60 others' read levels, against the noise-free points."""
    cfg = SyntheticConfig(prevalence="enriched")
    references = {}
    for i in range(60):
        references[i] = {v.level: v.annotated for v in generate_image(image_seed(5, i), cfg)[1] if not v.imputed}
    px, rel = [], []
    for i in range(20):
        vertebrae = generate_image(image_seed(6, i), cfg)[1]
        read = {v.level: v.annotated for v in vertebrae if not v.imputed}
        truth = {v.level: v.keypoints for v in vertebrae if v.imputed}
        for level, fill in impute_spine(read, references, list(truth), k=5).items():
            px.append(np.linalg.norm(fill.keypoints - truth[level], axis=1).mean())
            rel.append(px[-1] / float(morphometry(truth[level][None])["hp"][0]))
    assert len(px) > 120
    measured["imputation error vs noise-free points (px, of height)"] = f"{np.mean(px):.2f}, {np.mean(rel):.3f}"
    assert np.median(rel) < 0.2 and np.mean(rel) < 0.3


def _run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("imp")
    paths = write_synthetic_dataset(root / "data", 20, seed=2, config=SyntheticConfig(height=256, width=192, prevalence="enriched"), progress=False)
    return root, paths


def test_the_script_fills_missing_levels_and_never_alters_read_ones(synthetic):
    root, paths = synthetic
    source = json.loads(paths["train"].read_text())
    read_only = dict(source, annotations=[a for a in source["annotations"] if not a["imputed"]])
    (root / "read.json").write_text(json.dumps(read_only))
    result = _run("--input", root / "read.json", "--output", root / "filled.json", "--levels", "T4..L4")
    assert result.returncode == 0, result.stderr
    assert "T4: " in result.stdout and "L4: " in result.stdout
    filled = json.loads((root / "filled.json").read_text())
    original = {a["id"]: a for a in read_only["annotations"]}
    new = [a for a in filled["annotations"] if a["id"] not in original]
    assert [a for a in filled["annotations"] if a["id"] in original] == read_only["annotations"]
    assert new and all(a["imputed"] and a["graded_by"] == "gsq" and 0 <= a["grade"] <= 3 for a in new)
    reported = sum(int(line.split(":")[1].split(";")[0]) for line in result.stdout.splitlines() if line.startswith("  T") or line.startswith("  L"))
    assert reported == len(new)
    for a in new:
        pts = np.asarray(a["keypoints"]).reshape(6, 3)[:, :2]
        x, y, w, h = a["bbox"]
        assert x <= pts[:, 0].min() and pts[:, 0].max() <= x + w and y <= pts[:, 1].min() and pts[:, 1].max() <= y + h
    per_image = {}
    for a in filled["annotations"]:
        per_image.setdefault(a["image_id"], []).append(a["level"])
    assert all(len(v) == len(set(v)) for v in per_image.values())  # no level twice


def test_refill_reports_the_error_against_the_removed_vertebrae(synthetic):
    root, paths = synthetic
    result = _run("--input", paths["val"], "--output", root / "val_refilled.json", "--reference", paths["train"], "--refill")
    assert result.returncode == 0, result.stderr
    assert "re-filled" in result.stdout and "% of posterior height" in result.stdout


def test_bad_input_is_refused_with_the_file_and_record_named(synthetic, tmp_path):
    root, paths = synthetic
    before = paths["train"].read_bytes()
    same = _run("--input", paths["train"], "--output", paths["train"])
    assert same.returncode == 1 and "would overwrite the input" in same.stderr and paths["train"].read_bytes() == before
    data = json.loads(before)
    data["annotations"][3]["keypoints"] = data["annotations"][3]["keypoints"][:12]
    (tmp_path / "bad.json").write_text(json.dumps(data))
    bad = _run("--input", tmp_path / "bad.json", "--output", tmp_path / "out.json")
    assert bad.returncode == 1 and f"annotation {data['annotations'][3]['id']}" in bad.stderr and "18 finite numbers" in bad.stderr
    assert not (tmp_path / "out.json").exists()
    levels = _run("--input", paths["train"], "--output", tmp_path / "out.json", "--levels", "L4..T4")
    assert levels.returncode == 1 and "range is empty" in levels.stderr
