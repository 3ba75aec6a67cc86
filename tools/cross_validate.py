#!/usr/bin/env python3
"""The paper's cross-validation: every variant trained on each fold, tested on the held-out test split,
and Tables 1, 2 and 5 with mean ± std over folds and Bonferroni-corrected paired t-tests.

    python tools/cross_validate.py --config-file configs/xvfa_dino_r50_fine.py --output output/cv
    python tools/cross_validate.py --config-file C --folds 2 --variants image=configs/ablations/xvfa_fine_image.py \\
        --baselines rf=random_forest --output DIR [--resume] [--eval-only] [KEY=VALUE ...]

For fold k, each variant trains with ``tools/train_net.py`` on ``<prefix>_fold{k}_train``, where
``<prefix>_train`` is the config's training set (the synthetic datasets register their folds; your
own need ``dataset.folds_json``), and ``VFAEvaluator`` scores it on ``<prefix>_test``. Everything a
fold writes is under ``DIR/<variant>/fold{k}/``; its console output goes to ``train_net.log`` there.

- ``--variants NAME=CONFIG``: the ablations of Tables 1 and 5, each tested against the full model
  (``--config-file``, named ``full``). By default the paper's four, ``configs/ablations/*``; one whose
  config is the full model's is not trained twice.
- ``--baselines NAME=CONFIG``: the methods of Table 2. ``NAME=random_forest`` is the random forest of
  Cheng et al. on the full model's predicted keypoints (``tools/baseline_rf.py``); the paper's others
  are configs: ``configs/baselines/dino_grade.py`` (DINO detecting grades),
  ``configs/baselines/image_cnn.py`` (an image-level CNN, patient level only) and the image CNN of
  Dong et al., which is the ``lambda_kps=0`` ablation ``configs/ablations/xvfa_fine_image.py``.
  Every variant and baseline trains on the full model's training set's folds.
- ``--resume`` keeps every fold whose ``model_final.pth`` and ``vfa_metrics.json`` exist, evaluates a
  trained fold that has no metrics, and resumes an interrupted training from its last checkpoint.
- ``--eval-only`` builds the tables from the fold outputs there are; a missing fold is an error.
- ``--launcher local|slurm`` runs the folds in parallel as submitit jobs (logs under
  ``DIR/submitit/``): ``local`` as processes of this machine, ``--parallel`` at a time, each with
  cores / parallel threads; ``slurm`` as Slurm jobs (``--slurm-partition``, ``--gpus-per-job``,
  ``--timeout-min``). The random forest runs here once the full model's folds it reads are done. Without
  ``--launcher`` the folds run one after the other in this process's children.
- ``--ensemble`` also evaluates each variant's fold models as one ensemble on the test split
  (``DIR/<variant>/ensemble/``) and writes ``DIR/ensemble.md``: one fold model against the ensemble,
  with the spread between models (epistemic) beside the mean RLE interval (aleatoric).

Trailing KEY=VALUE pairs override every variant's config.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

from xvfa_ext.dependencies import require_detectron2

require_detectron2()

from detectron2.config import LazyConfig  # noqa: E402
from detectron2.data import DatasetCatalog  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from xvfa_ext.cross_validation import (  # noqa: E402
    TABLES,
    FoldMetricsError,
    build_table,
    ensemble_markdown,
    ensemble_rows,
    read_fold_metrics,
    table_files,
)
from xvfa_ext.data import DatasetError, register_from_config, training_prefix  # noqa: E402
from xvfa_ext.files import write_atomic  # noqa: E402
from xvfa_ext.metrics import HEADLINE_SCORE, SCORES  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = "full"
RANDOM_FOREST = "random_forest"
ABLATIONS = {
    "kps_regression": "configs/ablations/xvfa_fine_kps_regression.py",
    "gsq": "configs/ablations/xvfa_fine_gsq.py",
    "image": "configs/ablations/xvfa_fine_image.py",
    "gsq_image": "configs/ablations/xvfa_fine_gsq_image.py",
}


class CrossValidationError(RuntimeError):
    """A fold failed or its outputs are missing; the message names the fold and its files."""


def _named(pairs: List[str], flag: str) -> Dict[str, str]:
    named = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name or not value:
            raise CrossValidationError(f"{flag} takes NAME=CONFIG, got {pair!r}")
        if name in named or name == REFERENCE:
            raise CrossValidationError(f"{flag}: the name {name!r} is used twice ({REFERENCE!r} is the full model)")
        if value != RANDOM_FOREST and not Path(value).is_file():
            raise CrossValidationError(f"{flag} {name}: no such config file {value}")
        named[name] = value
    return named


def _resolved(config_file: str, opts: List[str]) -> str:
    """The config as text, but for its output folder: two files that give the same text train the same model."""
    cfg = LazyConfig.apply_overrides(LazyConfig.load(config_file), opts)
    cfg.train.output_dir = ""
    return json.dumps(OmegaConf.to_container(cfg, resolve=False), sort_keys=True, default=repr)


def fold_prefix(config_file: str, opts: List[str], folds: int) -> str:
    """The dataset prefix whose ``_fold{k}_train`` and ``_test`` sets the folds train and test on."""
    cfg = LazyConfig.apply_overrides(LazyConfig.load(config_file), opts)
    register_from_config(cfg)
    try:
        prefix = training_prefix(cfg)
    except DatasetError as exc:
        raise CrossValidationError(f"{config_file}: {exc}") from None
    registered = set(DatasetCatalog.list())
    missing = [f"{prefix}_fold{k}_train" for k in range(folds) if f"{prefix}_fold{k}_train" not in registered]
    missing += [f"{prefix}_test"] if f"{prefix}_test" not in registered else []
    if missing:
        raise CrossValidationError(
            f"{config_file}: no dataset {', '.join(missing)} is registered "
            "(your own data: set dataset.test_json and dataset.folds_json, datasets/convert_points.py writes both)"
        )
    return prefix


class Run:
    """One variant on one fold: its folder, its state and the commands that complete it."""

    def __init__(self, output: Path, variant: str, config: str, fold: int, prefix: str, opts: List[str], folder: Optional[Path] = None):
        self.variant, self.config, self.fold = variant, config, fold
        self.output, self.prefix, self.base_opts = output, prefix, opts
        self.dir = folder or output / variant / f"fold{fold}"
        self.test = f"{prefix}_test"
        self.opts = opts + [
            # Every variant and baseline on the same data: the full model's training set's fold k.
            f"dataloader.train.dataset.names={prefix}_train",
            f"dataset.fold={fold}",
            "dataset.eval_split=test",
            f"dataloader.test.dataset.names={self.test}",
            f"train.output_dir={self.dir}",
            "train.eval_period=0",  # one evaluation, after the last iteration
        ]

    @property
    def name(self) -> str:
        return f"{self.variant} fold {self.fold}"

    def trained(self) -> bool:
        return (self.dir / "model_final.pth").is_file()

    def evaluated(self) -> bool:
        return (self.dir / "vfa_metrics.json").is_file()

    def done(self) -> bool:
        return self.evaluated() and (self.config == RANDOM_FOREST or self.trained())

    def metrics(self) -> Dict:
        return read_fold_metrics(self.dir / "vfa_metrics.json", self.test)

    def _train_net(self, extra: List[str]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        log = self.dir / "train_net.log"
        cmd = [sys.executable, str(ROOT / "tools/train_net.py"), "--config-file", self.config, *extra, *self.opts]
        with open(log, "ab") as out:
            out.write(f"\n$ {' '.join(cmd)}\n".encode())
            out.flush()
            code = subprocess.call(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        if code != 0:
            raise CrossValidationError(f"{self.name}: tools/train_net.py exited with {code}; see {log}")

    def complete(self, resume: bool, reference: Optional["Run"]) -> str:
        """Train and evaluate what is missing; what was done."""
        if self.config == RANDOM_FOREST:
            from baseline_rf import write_baseline_metrics

            write_baseline_metrics(f"{self.prefix}_fold{self.fold}_train", reference.dir, self.dir)
            return "random forest fitted and scored"
        if resume and self.trained():
            self._train_net(["--eval-only", f"train.init_checkpoint={self.dir / 'model_final.pth'}"])
            return "evaluated"
        self._train_net(["--resume"] if resume and (self.dir / "last_checkpoint").is_file() else [])
        if not self.evaluated():
            raise CrossValidationError(f"{self.name}: training ended without {self.dir / 'vfa_metrics.json'}; see {self.dir / 'train_net.log'}")
        return "trained and evaluated"


class EnsembleRun(Run):
    """A variant's fold models as one ensemble (``train_net.py --eval-only --weights``) on the test split."""

    def __init__(self, folds: List[Run]):
        first = folds[0]
        folder = first.output / first.variant / "ensemble"
        super().__init__(first.output, first.variant, first.config, first.fold, first.prefix, first.base_opts, folder)
        self.folds = folds

    @property
    def name(self) -> str:
        return f"{self.variant} ensemble of {len(self.folds)}"

    def done(self) -> bool:
        return self.evaluated()

    def complete(self, resume: bool, reference: Optional[Run]) -> str:
        self._train_net(["--eval-only", "--weights", *[str(f.dir / "model_final.pth") for f in self.folds]])
        return "evaluated"


def run_folds(runs: List[Run], resume: bool, eval_only: bool, reference: Dict[int, Run], launcher=None) -> None:
    """Complete the runs not done: in turn, or as submitit jobs with ``launcher`` (the parsed
    ``--launcher``, ``--parallel``, ``--timeout-min``, ``--slurm-partition``, ``--gpus-per-job``)."""
    todo = [r for r in runs if not (r.done() and (resume or eval_only))]
    if eval_only:
        if todo:
            raise CrossValidationError(
                "--eval-only: no results for " + ", ".join(f"{r.name} ({r.dir / 'vfa_metrics.json'})" for r in todo)
            )
        return
    if not resume:
        clash = [r for r in runs if r.dir.exists() and any(r.dir.iterdir())]
        if clash:
            raise CrossValidationError(
                f"{clash[0].dir} already holds outputs: pass --resume to keep finished folds, or choose another --output"
            )
    print(f"cross_validate: {len(runs)} runs, {len(runs) - len(todo)} already done, {len(todo)} to do", flush=True)
    if launcher is None:
        _run_in_turn(todo, resume, reference)
    else:
        # The random forest reads the full model's fold predictions: it waits for them, here (it takes seconds).
        _run_as_jobs([r for r in todo if r.config != RANDOM_FOREST], resume, reference, launcher)
        _run_in_turn([r for r in todo if r.config == RANDOM_FOREST], resume, reference)


def _run_in_turn(todo: List[Run], resume: bool, reference: Dict[int, Run]) -> None:
    spent = []
    for i, run in enumerate(todo):
        start = time.time()
        what = run.complete(resume, reference.get(run.fold))
        spent.append(time.time() - start)
        left = len(todo) - i - 1
        eta = sum(spent) / len(spent) * left
        print(
            f"cross_validate: {run.name}: {what} in {spent[-1] / 60:.1f} min "
            f"({i + 1}/{len(todo)}; {left} left, ETA {eta / 60:.1f} min)",
            flush=True,
        )


def _complete_job(run: Run, resume: bool, reference: Optional[Run], threads: Optional[int]) -> str:
    """One submitit job: a run completed in the job's process."""
    if threads:
        os.environ["OMP_NUM_THREADS"] = str(threads)  # for the train_net.py it starts
    return run.complete(resume, reference)


def _run_as_jobs(todo: List[Run], resume: bool, reference: Dict[int, Run], launcher: argparse.Namespace) -> None:
    """``todo`` as submitit jobs, at most ``launcher.parallel`` at a time on the local executor."""
    import submitit

    if not todo:
        return
    folder = todo[0].output / "submitit"
    executor = submitit.AutoExecutor(folder=str(folder), cluster=launcher.launcher)
    params = {"timeout_min": launcher.timeout_min}
    threads = None
    if launcher.launcher == "slurm":
        params.update(slurm_partition=launcher.slurm_partition, gpus_per_node=launcher.gpus_per_job, tasks_per_node=1)
        params = {k: v for k, v in params.items() if v is not None}
    else:
        threads = max(1, (os.cpu_count() or 1) // launcher.parallel)
    executor.update_parameters(**params)
    limit = launcher.parallel if launcher.launcher == "local" else len(todo)
    waiting, running, start, finished = list(todo), [], time.time(), 0
    while waiting or running:
        while waiting and len(running) < limit:
            run = waiting.pop(0)
            running.append((run, executor.submit(_complete_job, run, resume, reference.get(run.fold), threads)))
            print(f"cross_validate: {run.name}: submitted ({launcher.launcher} job {running[-1][1].job_id})", flush=True)
        done = [(r, j) for r, j in running if j.done()]
        if not done:
            time.sleep(1.0)
            continue
        for run, job in done:
            running.remove((run, job))
            try:
                what = job.result()
            except Exception:  # the job's own error: the last line of its log
                lines = (job.stderr() or "").strip().splitlines()
                message = lines[-1] if lines else "no error output"
                raise CrossValidationError(f"{run.name}: job {job.job_id} failed ({message}); see {job.paths.stderr}") from None
            finished += 1
            print(f"cross_validate: {run.name}: {what} ({finished}/{len(todo)} after "
                  f"{(time.time() - start) / 60:.1f} min)", flush=True)


def _dong(ablations: Dict[str, str]) -> List[str]:
    """The ablations that are the image CNN of Dong et al. (``lambda_kps=0``, ``ABLATIONS["image"]``)."""
    return [name for name, config in ablations.items() if Path(config).resolve() == (ROOT / ABLATIONS["image"]).resolve()]


def write_tables(output: Path, runs: List[Run], ablations: Dict[str, str], baselines: List[str], descriptions: Dict[str, str], score: str) -> None:
    by_variant: Dict[str, List[Dict]] = {}
    for run in runs:
        by_variant.setdefault(run.variant, []).append(run.metrics())
    # Tables 1 and 5 compare the ablations with the full model, Table 2 the other methods, among them
    # the image CNN of Dong et al., which is the lambda_kps=0 ablation.
    members = {"table1_grade": list(ablations), "table5_morphology": list(ablations), "table2_sota": [*_dong(ablations), *baselines]}
    for name in TABLES:
        variants = [REFERENCE] + members[name]
        # Morphology is scored by its probabilities under keypoint sampling (the headline) only.
        table_score = HEADLINE_SCORE if name == "table5_morphology" else score
        table = build_table(name, {v: by_variant[v] for v in variants}, REFERENCE, score=table_score)
        for file_name, data in table_files(table, {v: descriptions[v] for v in variants}).items():
            write_atomic(output / file_name, data)
        print(f"cross_validate: wrote {output / name}.md, .csv and .json ({table['tests']} tests)", flush=True)


def write_ensemble_table(output: Path, ensembles: List[EnsembleRun]) -> None:
    rows, alpha = [], None
    for ensemble in ensembles:
        metrics = ensemble.metrics()
        alpha = metrics.get("alpha")
        predictions = json.loads((ensemble.dir / "vfa_predictions.json").read_text())
        spread = [k["epistemic_px"] for r in predictions if r["prediction"] for k in r["prediction"]["keypoints"].values()]
        rows.append(ensemble_rows(ensemble.variant, [f.metrics() for f in ensemble.folds], metrics, spread))
    write_atomic(output / "ensemble.md", ensemble_markdown(rows, alpha).encode())
    write_atomic(output / "ensemble.json", json.dumps(rows, indent=1, allow_nan=False).encode())
    print(f"cross_validate: wrote {output / 'ensemble'}.md and .json", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True, help="the full model's LazyConfig")
    parser.add_argument("--folds", type=int, default=5, help="how many folds to run, from fold 0 (default 5)")
    parser.add_argument("--variants", nargs="*", default=None, metavar="NAME=CONFIG", help="ablations (default: configs/ablations/*)")
    parser.add_argument("--baselines", nargs="*", default=[], metavar="NAME=CONFIG", help=f"Table 2's methods; CONFIG may be {RANDOM_FOREST}")
    parser.add_argument("--output", type=Path, required=True, help="the folder for the folds' outputs and the tables")
    parser.add_argument("--resume", action="store_true", help="keep finished folds, finish interrupted ones")
    parser.add_argument("--eval-only", action="store_true", help="only rebuild the tables from the fold outputs")
    parser.add_argument("--ensemble", action="store_true",
                        help="also evaluate each variant's fold models as one ensemble (ensemble.md)")
    parser.add_argument("--launcher", choices=["local", "slurm"], help="run the folds in parallel as submitit jobs")
    parser.add_argument("--parallel", type=int, default=2, help="local jobs at a time (default 2)")
    parser.add_argument("--timeout-min", type=int, default=24 * 60, help="a job's time limit in minutes")
    parser.add_argument("--slurm-partition", help="the Slurm partition of the jobs")
    parser.add_argument("--gpus-per-job", type=int, help="GPUs of a Slurm job")
    parser.add_argument("--score", default=HEADLINE_SCORE, choices=sorted(SCORES), help="the screening score of Tables 1 and 2")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY=VALUE overrides for every variant")
    args = parser.parse_args(argv)
    try:
        if args.parallel < 1:
            raise CrossValidationError("--parallel must be at least 1")
        if args.folds < 2:
            raise CrossValidationError("--folds must be at least 2: a t-test over folds needs two")
        if not Path(args.config_file).is_file():
            raise CrossValidationError(f"--config-file: no such file {args.config_file}")
        ablations = _named(args.variants if args.variants is not None else [f"{k}={v}" for k, v in ABLATIONS.items()], "--variants")
        baselines = _named(args.baselines, "--baselines")
        if set(ablations) & set(baselines):
            raise CrossValidationError(f"a name is both a variant and a baseline: {sorted(set(ablations) & set(baselines))}")
        prefix = fold_prefix(args.config_file, args.opts, args.folds)
        full = _resolved(args.config_file, args.opts)
        same = [name for name, config in ablations.items() if _resolved(config, args.opts) == full]
        for name in same:
            print(f"cross_validate: variant {name} ({ablations.pop(name)}) is the full model's config; it is not trained twice", flush=True)
        configs = {REFERENCE: args.config_file, **ablations, **baselines}
        descriptions = {name: config if config != RANDOM_FOREST else f"random forest (Cheng et al.) on {REFERENCE}'s keypoints" for name, config in configs.items()}
        descriptions[REFERENCE] += " (the full model" + (f"; also {', '.join(same)})" if same else ")")
        runs = [Run(args.output, name, config, k, prefix, list(args.opts)) for name, config in configs.items() for k in range(args.folds)]
        reference = {r.fold: r for r in runs if r.variant == REFERENCE}
        # The random forest scores the full model's keypoints: it runs after them.
        runs.sort(key=lambda r: r.config == RANDOM_FOREST)
        run_folds(runs, args.resume, args.eval_only, reference, args if args.launcher else None)
        for name in _dong(ablations):
            descriptions[name] += " (lambda_kps=0: the image CNN of Dong et al. in Table 2)"
        write_tables(args.output, runs, ablations, list(baselines), descriptions, args.score)
        if args.ensemble:
            # XVFA models: the full model and its ablations (the baselines have no keypoints to combine).
            ensembles = [EnsembleRun([r for r in runs if r.variant == v]) for v in [REFERENCE, *ablations]]
            run_folds(ensembles, args.resume, args.eval_only, {}, args if args.launcher else None)
            write_ensemble_table(args.output, ensembles)
        write_atomic(args.output / "cross_validation.json", json.dumps(
            {"config": args.config_file, "prefix": prefix, "folds": args.folds, "variants": configs, "same_as_full": same, "opts": args.opts},
            indent=1).encode())
    except (CrossValidationError, FoldMetricsError, DatasetError, ValueError) as exc:
        print(f"cross_validate.py: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
