"""Several models' predictions on the same vertebrae as one: the ensemble mean, and the spread between
the models (epistemic uncertainty) beside the mean within-model RLE interval (aleatoric).

The paper models aleatoric uncertainty only (its section 4). Models trained on different folds
disagree most where the data taught them least; their spread is that second kind of uncertainty.
"""

from typing import Sequence

import torch

from .prediction_fields import BY_NAME, CLASSES


def ensemble_instances(members: Sequence):
    """One ``Instances`` from M models' ``Instances`` of the same N vertebrae (same boxes, same order).

    Args:
        members: M ``Instances`` as ``VertebraROIHead`` returns them: ``pred_boxes``, ``scores``,
            ``pred_keypoints`` (N, 6, 3), ``pred_keypoint_eps`` (N, 6), ``pred_keypoint_eps_levels``
            (N, 6, L), ``pred_keypoint_scale`` (N, 6, 2) and the probabilities (N, C).

    Returns:
        ``Instances`` with the lead model's boxes and scores, the mean over models of every other
        field (so ``pred_keypoint_eps`` is the mean within-model interval: aleatoric), and
        ``pred_keypoint_epistemic`` (N, 6), the root-mean-square distance of the models' keypoints
        from their mean, and ``grade_probs_members_std`` (N, 4) and ``morphology_probs_members_std``
        (N, 3), the standard deviation over models of the sampled-mean probabilities.
    """
    if not members:
        raise ValueError("an ensemble needs at least one model's predictions")
    lead = members[0]
    n = len(lead)
    boxes = lead.get("pred_boxes").tensor
    for k, m in enumerate(members[1:], 1):
        if len(m) != n or not torch.allclose(m.get("pred_boxes").tensor, boxes):
            raise ValueError(f"model {k} predicted other vertebrae than model 0: an ensemble's models share the boxes")
    out = type(lead)(lead.image_size)
    for name, value in lead.get_fields().items():
        if BY_NAME[name].combine == "lead":
            out.set(name, value)  # the boxes, scores and classes every model was given
        else:
            out.set(name, torch.stack([m.get(name) for m in members]).mean(0))
    points = torch.stack([m.get("pred_keypoints")[..., :2] for m in members])  # (M, N, 6, 2)
    out.set("pred_keypoint_epistemic", (points - points.mean(0)).pow(2).sum(-1).mean(0).sqrt())
    for task in CLASSES:
        sampled = torch.stack([m.get(f"{task}_probs_mean") for m in members])
        out.set(f"{task}_probs_members_std", sampled.std(0, unbiased=False))
    return out
