"""An independent, plain-Python reading of docs/gsq.md, to check xvfa_ext.gsq against."""

import math

T = (0.20, 0.25, 0.40)


def reference_gsq(points):
    """(grade, morphology) of one vertebra given as six (x, y) pairs; (-1, -1) when invalid."""
    up, um, ua, lp, lm, la = points
    hp = math.dist(up, lp)
    hm = math.dist(um, lm)
    ha = math.dist(ua, la)
    if not all(math.isfinite(h) and h > 0 for h in (ha, hm, hp)):
        return -1, -1
    d = 1 - min(ha, hm, hp) / max(ha, hp)
    if d < T[0]:
        return 0, 0
    grade = 1 if d < T[1] else 2 if d < T[2] else 3
    if hm / hp < 1 and hm / ha < 1:
        return grade, 2
    return grade, 1
