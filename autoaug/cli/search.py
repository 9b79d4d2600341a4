"""`autoaug search` (learn a policy; resumable) and `autoaug export` (a run's best policies as one)."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from autoaug.search.alternatives import SearchVerdict
from autoaug.search.config import ALGOS, SearchConfig, resolve_config
from autoaug.search.export import ExportOptions, Reevaluation, export_policy
from autoaug.search.store import Trial
from autoaug.search.search import run_search
from autoaug.cli.common import IMAGE_SIZE_HELP, choose_dataset
from autoaug.cli.policy import add_target_arguments, print_loading_note, target_params
from autoaug.cli.pool import RESUME_NOTE
from autoaug.settings import to_toml


def _flag_overrides(args: argparse.Namespace) -> list[str]:
    """The flags that are sugar for `--set key=value`, in the same single override mechanism."""
    overrides = []
    for key in ("dataset", "image_size", "out", "budget", "algo", "seed", "workers"):
        value = getattr(args, key)
        if value is not None:
            overrides.append(f"{key}={value}")
    return overrides + list(args.set or [])


def cmd_search(args: argparse.Namespace) -> int:
    # run_search checks the config against the one saved in the run directory.
    config, _saved = resolve_config(args.config, _flag_overrides(args))
    if args.print_config:
        print(to_toml(config), end="")
        return 0
    result = run_search(config, progress=not args.no_progress)
    minutes, seconds = divmod(result.seconds, 60)
    print(f"search done: {result.completed} policies evaluated ({result.failed} failed) in "
          f"{result.run_dir}; this run took {int(minutes)}m{seconds:04.1f}s")
    _reevaluation_lines(result.reevaluation)
    _exported_lines(result.best, result.reevaluation, result.completed)
    print(f"wrote {result.policy_path} ({len(result.policy.sub_policies)} sub-policies from the best "
          f"{len(result.best)})")
    _albumentations_lines(result.albumentations_path, result.pipeline_paths)
    print_loading_note(result.policy)
    _verdict_lines(result.verdict)
    print("next:")
    if result.verdict is not None:
        print(f"  {result.verdict.compare_command}   # settles it in the final regime (add --epochs N for yours)")
    assert result.config is not None
    data = data_flags(result.config)
    print(f"  autoaug show {result.policy_path}{data} --out {result.run_dir / 'policy.png'}")
    print(f"  autoaug train --policy {result.policy_path}{data}")
    return 0


def data_flags(config: SearchConfig) -> str:
    """The dataset flags of the next-steps lines: the policy file records them too, and the
    commands default to them, but the lines say on what they will run (issue #22)."""
    sized = "" if config.image_size is None else f" --image-size {config.image_size}"
    return f" --dataset {shlex.quote(config.dataset)}{sized}"


def _verdict_lines(verdict: SearchVerdict | None) -> None:
    if verdict is None:
        print("no verdict: without re-evaluation (export.reevaluate_top = 0) nothing trained the free alternatives")
        return
    print(verdict.summary)
    if verdict.verdict is not None:
        print(verdict.verdict.line(" (child regime)"))
    if verdict.path is not None:
        print(f"wrote {verdict.path}")


def cmd_export(args: argparse.Namespace) -> int:
    exported = export_policy(args.run_dir, ExportOptions(
        top=args.top, out=args.out, dataset=args.dataset, image_size=args.image_size,
        reevaluate_top=args.reevaluate_top, reevaluate_seeds=args.reevaluate_seeds,
        progress=not args.no_progress, targets=target_params(args)))
    if args.dataset is not None:
        warning = choose_dataset(args, exported.policy.provenance, str(args.run_dir)).warning
        if warning:
            print(warning, file=sys.stderr)
    rewards = ", ".join(f"{t.reward:.4f}" for t in exported.trials)
    _reevaluation_lines(exported.reevaluation)
    if exported.verdict is not None:
        _verdict_lines(exported.verdict)
    print(f"wrote {exported.policy_path} ({len(exported.policy.sub_policies)} sub-policies from "
          f"the best {len(exported.trials)} policies, search rewards {rewards})")
    if exported.albumentations_path is None:
        print(f"no albumentations files: {exported.policy_path} is a device or a pipe, with no folder beside it "
              "for them; export to a file to get them")
    else:
        _albumentations_lines(exported.albumentations_path, exported.pipeline_paths)
    print_loading_note(exported.policy if exported.pipeline is None else exported.pipeline)
    return 0


def _albumentations_lines(policy_only: Path, pipelines: dict[str, Path]) -> None:
    """Where the albumentations files went, each with what it is."""
    print(f"wrote {policy_only} (the policy alone: HWC uint8 -> uint8)")
    for kind, path in pipelines.items():
        what = "the policy inside the training recipe" if kind == "train" else "Normalize"
        print(f"wrote {path} (the whole {kind} pipeline: {what}, ending in ToTensorV2)")


def _exported_lines(best: list[Trial], reevaluation: list[Reevaluation] | None, completed: int) -> None:
    """The exported policies, best first, each with what ranked it and its search rewards."""
    by = "their re-evaluated mean" if reevaluation else (
        "the search's paired reward" if best and best[0].paired is not None else "the search's reward")
    print(f"exported {len(best)} policies, best first by {by}:")
    for t in best:
        paired = "" if t.paired is None else f", paired reward {t.paired:+.4f} (minus the round's reference child)"
        print(f"  trial {t.id} (round {t.round + 1}): search reward {t.reward:.4f}{paired}")
    if any(t.id > completed for t in best):
        print(f"  (trial ids number every child of the run's store: the {completed} policies, each round's "
              "reference child and the re-evaluation's children, so they run past the budget)")


def _reevaluation_lines(reevaluation: list[Reevaluation] | None) -> None:
    if not reevaluation:
        return
    print("re-evaluated on fresh seeds (mean +/- std; the first are exported):")
    for r in reevaluation:
        trial = r.trial
        search = trial.reward if trial.paired is None else trial.paired
        what = "reward" if trial.paired is None else "paired reward"
        if r.values:
            print(f"  trial {trial.id}: search {what} {search:+.4f}, re-evaluated "
                  f"{r.mean:+.4f} +/- {r.std:.4f} over {len(r.values)} seeds")
        else:
            print(f"  trial {trial.id}: search {what} {search:+.4f}, every re-evaluation failed")


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "search",
        help="learn an augmentation policy (LSTM controller + PPO); run again to resume",
        description=(
            "Search for an augmentation policy. With no arguments: the cpu-quick preset on the "
            "embedded reduced CIFAR-10, into runs/search (about 15 minutes on 2 CPU cores). "
            "Running the same command again on the same --out resumes. Every key of the config "
            "can be set with --set KEY=VALUE; --print-config shows them all."
        ),
    )
    p.add_argument("--config", metavar="FILE.toml", help="a TOML preset, e.g. experiments/gpu.toml")
    p.add_argument("--dataset", metavar="SPEC", help="dataset spec (default cifar10-reduced)")
    p.add_argument("--image-size", metavar="PIXELS", help=IMAGE_SIZE_HELP + "; recorded in RUN_DIR/config.toml")
    p.add_argument("--out", metavar="RUN_DIR", help="run directory (default runs/search)")
    p.add_argument("--budget", metavar="N", help="policies to evaluate in total")
    p.add_argument("--algo", choices=ALGOS, help="ppo (default) or random, for comparison")
    p.add_argument("--seed", metavar="S", help="search seed (default 0)")
    p.add_argument("--workers", metavar="N", help="worker processes per device (default auto: one "
                   "single-thread worker per core on a CPU, 4 per GPU)")
    p.add_argument("--set", nargs="+", action="extend", metavar="KEY=VALUE",
                   help="override config keys, e.g. --set batch_size=8 child.epochs=5 ppo.clip_coef=0.1; "
                   "child.flip=false: no horizontal flips (digits, text); child.cutout=N: the Cutout "
                   "side in pixels (0 = off; default 'auto' = half the image side, 16 on 32x32)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config as TOML and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_search, on_interrupt=RESUME_NOTE)

    p = subparsers.add_parser(
        "export",
        help="write the best policies of a search run as one policy: native JSON, the albumentations policy, "
        "and the whole train and eval albumentations pipelines",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="the --out of `autoaug search`")
    p.add_argument("--top", type=int,
                   help="concatenate the sub-policies of the best K policies (default: the run's "
                        "export.top, 5 as in the paper unless set)")
    p.add_argument("--out", metavar="FILE.json",
                   help="native policy file to write (default RUN_DIR/policy.json); the "
                        "albumentations files go next to it as FILE.albumentations.json, FILE.train.albumentations.json "
                        "and FILE.eval.albumentations.json")
    p.add_argument("--reevaluate-top", type=int, metavar="N",
                   help="re-train the best N policies on fresh seeds and export the best --top by "
                        "their mean (default: the run's export.reevaluate_top; 0 = no re-training)")
    p.add_argument("--reevaluate-seeds", type=int, metavar="S",
                   help="fresh seeds per re-evaluated policy (default: export.reevaluate_seeds)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--dataset", default=None, metavar="SPEC", help="dataset whose training split gives the "
                   "train and eval pipelines' Normalize (default: the run's dataset)")
    p.add_argument("--image-size", type=int, default=None, metavar="PIXELS",
                   help=IMAGE_SIZE_HELP + " (default: the run's image_size)")
    add_target_arguments(p)
    p.set_defaults(func=cmd_export, on_interrupt=RESUME_NOTE)
