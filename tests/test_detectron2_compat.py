"""The synthetic COCO files read through detectron2's own loader, extra fields included."""

from conftest import requires_detectron2
from xvfa_ext.synthetic import SyntheticConfig
from xvfa_ext.synthetic_dataset import write_synthetic_dataset


@requires_detectron2
def test_detectron2_loads_synthetic_coco(tmp_path):
    from detectron2.data.datasets import load_coco_json

    paths = write_synthetic_dataset(tmp_path, 4, seed=0, config=SyntheticConfig(height=160, width=128), progress=False)
    records = load_coco_json(
        str(paths["trainval"]), str(tmp_path / "images"), "xvfa_compat_test",
        extra_annotation_keys=["grade", "morphology", "level", "imputed"],
    )
    assert records and all(r["file_name"].endswith(".png") for r in records)
    ann = records[0]["annotations"][0]
    assert len(ann["keypoints"]) == 18 and ann["category_id"] == 0
    assert {"grade", "morphology", "level", "imputed"} <= set(ann)
