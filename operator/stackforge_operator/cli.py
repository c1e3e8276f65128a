"""Command line: `stackforge-operator run | crds | dev | backup run | drill run`."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from stackforge_operator import peering


def _run(args: argparse.Namespace) -> int:
    import kopf

    # Importing registers the handlers with kopf's default registry.
    import stackforge_operator.handlers  # noqa: F401

    kopf.configure(verbose=args.verbose)
    # Their debug output includes request headers (signatures, tokens): never log it.
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer", "kubernetes.client.rest"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    priority = peering.resolve_priority(args.priority)
    if args.peering is not None:
        logging.getLogger(__name__).info(
            "peering %r with priority %d%s", args.peering, priority,
            " (drawn at random: --priority=auto)" if args.priority == peering.AUTO else "")
    kopf.run(
        clusterwide=not args.namespace,
        namespaces=args.namespace or (),
        standalone=args.peering is None,
        peering_name=args.peering,
        priority=priority,
        liveness_endpoint=args.liveness,
    )
    return 0


def _crds(args: argparse.Namespace) -> int:
    from stackforge_operator import crdgen

    rendered = crdgen.render_all()
    if args.output_dir:
        crdgen.write_crds(Path(args.output_dir))
        return 0
    sys.stdout.write("---\n".join(rendered[name] for name in sorted(rendered)))
    return 0


def _dev(args: argparse.Namespace) -> int:
    from stackforge_operator.devcluster.localrun import run_local

    try:
        return run_local(
            run_dir=Path(args.run_dir) if args.run_dir else None,
            once=args.once,
            nodes=args.nodes,
            kwok=args.kwok,
        )
    except KeyboardInterrupt:
        # Only reaches here while building, before any component started (from then
        # on run_local stops everything itself): a line, not a traceback.
        print("dev: interrupted; nothing was started", file=sys.stderr)
        return 130


def _backup_run(args: argparse.Namespace) -> int:
    from stackforge_operator.backup import cli as backup_cli

    return backup_cli.run_from_args(args, args.backup_run_parser)


def _drill_run(args: argparse.Namespace) -> int:
    from stackforge_operator.drill import cli as drill_cli

    return drill_cli.run_from_args(args, args.drill_run_parser)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stackforge-operator", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the operator against the current kubeconfig")
    run.add_argument(
        "--liveness",
        default="http://0.0.0.0:8080/healthz",
        help="kopf liveness endpoint URL (default: %(default)s)",
    )
    run.add_argument(
        "-n", "--namespace", action="append",
        help="watch only this namespace (repeatable); default: the whole cluster",
    )
    run.add_argument("--peering", help="peering object name for HA; default: standalone")
    run.add_argument(
        "--priority", type=peering.parse_priority, default=0,
        help="peering priority: an integer, or 'auto' for a random one drawn at start "
             "(replicas of one Deployment need distinct priorities); default: 0",
    )
    run.add_argument("-v", "--verbose", action="store_true")
    run.set_defaults(func=_run)

    crds = commands.add_parser("crds", help="print the CustomResourceDefinitions")
    crds.add_argument("--output-dir", help="write one file per CRD into this directory")
    crds.set_defaults(func=_crds)

    dev = commands.add_parser(
        "dev",
        help="start a local control plane, install the CRDs, run the operator, apply examples/",
    )
    dev.add_argument("--run-dir", help="keep certificates, kubeconfig and logs here")
    dev.add_argument(
        "--kwok", action="store_true",
        help="today's fake-node cluster instead of one real node: many nodes, pods never run",
    )
    dev.add_argument("--nodes", type=int, default=3,
                     help="fake kwok nodes with --kwok (default: 3)")
    dev.add_argument(
        "--once", action="store_true",
        help="stop after showing the applied examples instead of watching until Ctrl-C",
    )
    dev.set_defaults(func=_dev)

    backup = commands.add_parser("backup", help="backup runner (what a backup Job's pod runs)")
    backup_commands = backup.add_subparsers(dest="backup_command", required=True)
    backup_run = backup_commands.add_parser(
        "run", help="stream pg_dump and the configuration to S3, then write the manifest",
    )
    from stackforge_operator.backup.cli import add_run_arguments

    add_run_arguments(backup_run)
    backup_run.set_defaults(func=_backup_run, backup_run_parser=backup_run)

    drill = commands.add_parser("drill", help="DR drill runner (what a drill Job's pod runs)")
    drill_commands = drill.add_subparsers(dest="drill_command", required=True)
    drill_run = drill_commands.add_parser(
        "run", help="restore a backup from S3 into a scratch database, verify it, grade RTO/RPO",
    )
    from stackforge_operator.drill.cli import add_run_arguments as add_drill_run_arguments

    add_drill_run_arguments(drill_run)
    drill_run.set_defaults(func=_drill_run, drill_run_parser=drill_run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result
