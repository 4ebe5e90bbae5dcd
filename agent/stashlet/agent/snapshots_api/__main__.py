"""``python -m stashlet.agent.snapshots_api``: serve the Snapshot API over TLS until SIGTERM.

It reads the front proxy's settings from ConfigMap kube-system/extension-apiserver-authentication at start
and again every minute (a new CA is added to those the TLS layer trusts), checks that restic runs, and
serves on ``--bind-address:--secure-port`` with ``--tls-cert-file``/``--tls-private-key-file`` (the
certificate the APIService's ``caBundle`` verifies, for ``<service>.<namespace>.svc``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import ssl
import sys
import tempfile
from collections.abc import Sequence

from stashlet.agent.http_api.transport import Server
from stashlet.agent.restic.errors import ResticUnavailable
from stashlet.agent.restic.runner import ResticSettings, inherited_env, restic_version
from stashlet.agent.snapshots_api.frontproxy import FrontProxyUnconfigured, read_config, tls_context
from stashlet.agent.snapshots_api.reading import RESTIC_TIMEOUT, SnapshotReader
from stashlet.agent.snapshots_api.server import FrontProxyState, SnapshotsApi, make_app
from stashlet.kube import logs
from stashlet.kube.client import new_api_client
from stashlet.kube.errors import KubeError
from stashlet.kube.rest import KubeApi

log = logging.getLogger("stashlet.agent.snapshots_api")

REFRESH_SECONDS = 60.0


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m stashlet.agent.snapshots_api",
        description="Serve Stash's Snapshot API (repositories.stash.appscode.com/v1alpha1) behind the "
        "Kubernetes aggregation layer.",
    )
    parser.add_argument("--bind-address", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    parser.add_argument("--secure-port", type=int, default=8443, help="HTTPS port (default 8443)")
    parser.add_argument("--tls-cert-file", required=True, help="serving certificate (PEM)")
    parser.add_argument("--tls-private-key-file", required=True, help="serving key (PEM)")
    parser.add_argument("--kubeconfig", default=None, help="kubeconfig (default: the pod's account)")
    parser.add_argument(
        "--tmp-dir",
        default=os.environ.get("TMPDIR") or tempfile.gettempdir(),
        help="scratch folder for restic (default $TMPDIR)",
    )
    parser.add_argument(
        "--restic-timeout",
        type=float,
        default=RESTIC_TIMEOUT,
        help=f"seconds restic may take to list one repository (default {RESTIC_TIMEOUT:g})",
    )
    parser.add_argument("--log-level", default="info", help="debug, info, warning or error (default info)")
    return parser.parse_args(argv)


async def _refresh(api: KubeApi, state: FrontProxyState, context: ssl.SSLContext) -> None:
    """Follow the cluster's front-proxy settings: re-read them every minute."""
    while True:
        await asyncio.sleep(REFRESH_SECONDS)
        try:
            config = await read_config(api)
        except (KubeError, FrontProxyUnconfigured, OSError) as exc:
            log.warning("front-proxy settings not refreshed", extra={"error": str(exc)})
            continue
        if config != state.config:
            if config.client_ca != state.config.client_ca:
                context.load_verify_locations(cadata=config.client_ca)
            state.config = config
            log.info("front-proxy settings changed", extra={"allowedNames": list(config.allowed_names)})


async def serve(args: argparse.Namespace) -> int:
    """Serve until SIGTERM or SIGINT."""
    settings = ResticSettings(
        binary=os.environ.get("STASHLET_RESTIC", "restic"),
        tmp_dir=args.tmp_dir,
        base_env={**inherited_env(os.environ), "HOME": args.tmp_dir},
    )
    version = await restic_version(settings)
    api = await new_api_client(args.kubeconfig)
    try:
        try:
            config = await read_config(api)
        except FrontProxyUnconfigured as exc:
            log.error("cannot serve", extra={"error": exc.message})
            return 2
        except KubeError as exc:
            log.error(
                "cannot read the front proxy's settings",
                extra={"configMap": "kube-system/extension-apiserver-authentication", "error": exc.message},
            )
            return 2
        context = tls_context(args.tls_cert_file, args.tls_private_key_file, config)
        state = FrontProxyState(config)
        reader = SnapshotReader(api, settings, args.tmp_dir, timeout=args.restic_timeout)
        server = Server(make_app(SnapshotsApi(reader, state)), ssl_context=context)
        await server.start(args.bind_address, args.secure_port)
        log.info(
            "serving the Snapshot API",
            extra={"addresses": [list(a[:2]) for a in server.addresses], "restic": version.version},
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        refresher = asyncio.create_task(_refresh(api, state, context))
        await stop.wait()
        refresher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await refresher
        await server.cleanup()
        log.info("stopped")
        return 0
    finally:
        await api.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logs.configure(args.log_level)
    try:
        return asyncio.run(serve(args))
    except ResticUnavailable as exc:
        log.error("cannot start", extra={"error": exc.message})
        return 2


if __name__ == "__main__":
    sys.exit(main())
