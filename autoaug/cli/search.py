"""`autoaug search` (learn a policy; resumable) and `autoaug export` (a run's best policies as one)."""

from __future__ import annotations

import argparse

from autoaug.search.alternatives import SearchVerdict
from autoaug.search.config import ALGOS, resolve_config
from autoaug.search.export import ExportOptions, Reevaluation, export_policy
from autoaug.search.search import run_search
from autoaug.cli.policy import add_pipeline_arguments, print_loading_note
from autoaug.settings import to_toml


def _flag_overrides(args: argparse.Namespace) -> list[str]:
    """The flags that are sugar for `--set key=value`, in the same single override mechanism."""
    overrides = []
    for key in ("dataset", "out", "budget", "algo", "seed", "workers"):
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
    print("best rewards: " + ", ".join(f"{t.reward:.4f}" for t in result.best))
    _reevaluation_lines(result.reevaluation)
    print(f"wrote {result.policy_path} ({len(result.best) * 5} sub-policies from the best "
          f"{len(result.best)}) and {result.albumentations_path}")
    print_loading_note(result.policy)
    _verdict_lines(result.verdict)
    print("next:")
    if result.verdict is not None:
        print(f"  {result.verdict.compare_command}   # settles it in the final regime (add --epochs N for yours)")
    print(f"  autoaug show {result.policy_path} --out {result.run_dir / 'policy.png'}")
    print(f"  autoaug train --policy {result.policy_path}")
    return 0


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
        top=args.top, out=args.out, pipeline=args.pipeline, dataset=args.dataset,
        reevaluate_top=args.reevaluate_top, reevaluate_seeds=args.reevaluate_seeds,
        progress=not args.no_progress))
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
        print(f"wrote {exported.albumentations_path}")
    if exported.pipeline_path is not None:
        print(f"wrote {exported.pipeline_path} (the whole {args.pipeline} pipeline, ending in ToTensorV2)")
    print_loading_note(exported.policy if exported.pipeline is None else exported.pipeline)
    return 0


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
    p.add_argument("--out", metavar="RUN_DIR", help="run directory (default runs/search)")
    p.add_argument("--budget", metavar="N", help="policies to evaluate in total")
    p.add_argument("--algo", choices=ALGOS, help="ppo (default) or random, for comparison")
    p.add_argument("--seed", metavar="S", help="search seed (default 0)")
    p.add_argument("--workers", metavar="N", help="worker processes per device")
    p.add_argument("--set", nargs="+", action="extend", metavar="KEY=VALUE",
                   help="override config keys, e.g. --set batch_size=8 child.epochs=5 ppo.clip_coef=0.1; "
                   "child.flip=false: no horizontal flips (digits, text); child.cutout=N: the Cutout "
                   "side in pixels (0 = off; default 'auto' = half the image side, 16 on 32x32)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config as TOML and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_search)

    p = subparsers.add_parser(
        "export",
        help="write the best policies of a search run as one policy (native + albumentations JSON)",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="the --out of `autoaug search`")
    p.add_argument("--top", type=int,
                   help="concatenate the sub-policies of the best K policies (default: the run's "
                        "export.top, 5 as in the paper unless set)")
    p.add_argument("--out", metavar="FILE.json",
                   help="native policy file to write (default RUN_DIR/policy.json); the "
                        "albumentations JSON goes next to it as FILE.albumentations.json")
    p.add_argument("--reevaluate-top", type=int, metavar="N",
                   help="re-train the best N policies on fresh seeds and export the best --top by "
                        "their mean (default: the run's export.reevaluate_top; 0 = no re-training)")
    p.add_argument("--reevaluate-seeds", type=int, metavar="S",
                   help="fresh seeds per re-evaluated policy (default: export.reevaluate_seeds)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_pipeline_arguments(p, "with --pipeline train / eval: dataset whose training split gives "
                           "Normalize's mean and std (default: the run's dataset)")
    p.set_defaults(func=cmd_export)
