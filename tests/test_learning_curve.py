"""Learning curves from detectron2's metrics.json: the reader, the table and tools/plot_learning_curve.py."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from xvfa_ext.learning_curve import LearningCurveError, evaluation_table, read_metrics, series

ROOT = Path(__file__).resolve().parents[1]


def write_run(folder: Path, lines) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").write_text("".join(
        (line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return folder


def training_run(folder: Path, slope_at_200: float = 0.2) -> Path:
    """Losses every 20 iterations, evaluations at 99 and 199, and a resume that repeats 180-199 with
    other values (the later lines hold)."""
    lines = [{"iteration": it, "total_loss": 10.0 - it / 50, "lr": 1e-4} for it in range(19, 200, 20)]
    lines.insert(5, {"iteration": 99, "vfa/keypoint_error_of_height": 0.3, "vfa/reduction_slope": 0.05})
    lines.append({"iteration": 199, "vfa/keypoint_error_of_height": 0.5, "vfa/reduction_slope": 0.0})
    lines += [{"iteration": 199, "total_loss": 5.5}, "",
              {"iteration": 199, "vfa/keypoint_error_of_height": 0.2, "vfa/reduction_slope": slope_at_200}]
    return write_run(folder, lines)


def test_the_reader_keeps_every_iteration_once_and_the_later_line_of_a_repeated_one(tmp_path):
    rows = read_metrics(training_run(tmp_path / "run"))
    assert list(rows) == list(range(19, 200, 20))
    assert series(rows, "vfa/keypoint_error_of_height") == ([99, 199], [0.3, 0.2])
    assert rows[199]["total_loss"] == 5.5 and rows[199]["lr"] == 1e-4
    its, losses = series(rows, "total_loss")
    assert its == list(range(19, 200, 20)) and losses[0] == pytest.approx(10 - 19 / 50)
    table = evaluation_table({"a": rows}, ["vfa/keypoint_error_of_height", "bbox/AP50"]).splitlines()
    assert table[0] == "| run | iteration | vfa/keypoint_error_of_height | bbox/AP50 |"
    assert table[2:] == ["| a | 99 | 0.3 | - |", "| a | 199 | 0.2 | - |"]


@pytest.mark.parametrize("line, message", [
    ("{not json", "line 2: not JSON"),
    ('{"total_loss": 1.0}', "line 2: not an object with an integer 'iteration'"),
    ('{"iteration": "7", "total_loss": 1.0}', "line 2: not an object with an integer 'iteration'"),
    ('[1, 2]', "line 2: not an object with an integer 'iteration'"),
    ('{"iteration": 7, "total_loss": "low"}', "line 2: 'total_loss' is not a number"),
])
def test_a_malformed_line_is_named(tmp_path, line, message):
    path = write_run(tmp_path / "run", [{"iteration": 1, "total_loss": 2.0}, line]) / "metrics.json"
    with pytest.raises(LearningCurveError, match=f"^{path} {message}"):
        read_metrics(path)


def test_a_missing_or_empty_file_is_named(tmp_path):
    with pytest.raises(LearningCurveError, match="no such file"):
        read_metrics(tmp_path)
    write_run(tmp_path, ["", ""])
    with pytest.raises(LearningCurveError, match="holds no iteration"):
        read_metrics(tmp_path)


def tool(*args):
    return subprocess.run([sys.executable, str(ROOT / "tools" / "plot_learning_curve.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def test_the_tool_plots_two_runs_and_prints_their_evaluations(tmp_path):
    import cv2

    a = training_run(tmp_path / "fine")
    b = training_run(tmp_path / "other" / "fine", slope_at_200=0.7)
    png = tmp_path / "plots" / "curve.png"
    result = tool(a, b / "metrics.json", "--label", "first", "--label", "second", "--output", png,
                  "--target", "vfa/reduction_slope=0.5", "--target", "vfa/keypoint_error_of_height=0.1:0.3")
    assert result.returncode == 0, result.stderr
    assert "| second | 199 | 0.2 | 0.7 |" in result.stdout and "| first | 199 | 0.2 | 0.2 |" in result.stdout
    image = cv2.imread(str(png))
    # The loss panel and the two evaluated default metrics, side by side.
    assert image.shape[1] == pytest.approx(3 * 4.2 * 100, abs=2) and image.std() > 10


def test_the_tool_refuses_what_it_cannot_plot(tmp_path):
    a = training_run(tmp_path / "fine")
    png = tmp_path / "curve.png"
    result = tool(a, "--output", png, "--metric", "bbox/AP50")
    assert result.returncode == 2 and "no run evaluated 'bbox/AP50'" in result.stderr
    result = tool(a, "--output", png, "--target", "bbox/AP50=0.9")
    assert result.returncode == 2 and "--target 'bbox/AP50' is not a plotted metric" in result.stderr
    result = tool(a, "--output", png, "--target", "slope")
    assert result.returncode == 2 and "expected METRIC=NUMBER or METRIC=LOW:HIGH, got 'slope'" in result.stderr
    result = tool(a, "--output", png, "--target", "vfa/reduction_slope=0.1:0.2:0.3")
    assert result.returncode == 2 and "got 'vfa/reduction_slope=0.1:0.2:0.3'" in result.stderr
    result = tool(a, a, "--output", png)
    assert result.returncode == 2 and "two runs share a label" in result.stderr
    write_run(tmp_path / "broken", [{"iteration": 1, "total_loss": 1.0}, "{"])
    result = tool(a, tmp_path / "broken", "--output", png)
    assert result.returncode == 2 and "broken/metrics.json line 2: not JSON" in result.stderr
    assert not png.exists()


def test_the_training_speed_is_the_last_line_detectron2_logged(tmp_path):
    from xvfa_ext.learning_curve import training_speed

    log = tmp_path / "log.txt"
    log.write_text("[12/06 22:40:41 d2.engine.hooks]: Overall training speed: 97 iterations in 0:01:58 (1.2245 s / it)\n"
                   "[12/06 22:50:41 d2.engine.hooks]: Overall training speed: 2398 iterations in 0:48:56 (1.2170 s / it)\n"
                   "[12/06 22:50:41 d2.engine.hooks]: Total training time: 0:49:26 (0:00:30 on hooks)\n")
    assert training_speed(tmp_path) == (2398, 1.217)
    log.write_text("[12/06 22:40:41 d2.engine.hooks]: Total training time: 0:00:03 (0:00:01 on hooks)\n")
    with pytest.raises(LearningCurveError, match=f"^{log}: no 'Overall training speed' line"):
        training_speed(log)
    with pytest.raises(LearningCurveError, match="no such file"):
        training_speed(tmp_path / "elsewhere")
