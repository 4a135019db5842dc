"""`jubako deploy promote|rollback NAME`: edit a BentoDeployment's canary (docs/operator.md).

Thin: the edits are operator/canary.py's `promote` and `rollback`; the cluster is reached as
kubectl reaches it (KUBECONFIG or ~/.kube/config, its current context and namespace).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from jubako.errors import JubakoError

if TYPE_CHECKING:
    from jubako.operator.kube import Kube

KUBECONFIG = typer.Option(None, "--kubeconfig", help="Kubeconfig file (default: KUBECONFIG, ~/.kube/config).")
CONTEXT = typer.Option(None, "--context", help="Kubeconfig context (default: the current one).")
NAMESPACE = typer.Option(None, "--namespace", "-n", help="Namespace (default: the context's, else default).")


def _kube(kubeconfig: str | None, context: str | None, namespace: str | None) -> tuple[Kube, str]:
    from kubernetes import config

    from jubako.operator.kube import Kube, make_api_client

    if namespace is None:
        try:
            contexts, current = config.list_kube_config_contexts(config_file=kubeconfig)
            chosen = next((c for c in contexts if c["name"] == context), current) if context else current
            namespace = (chosen or {}).get("context", {}).get("namespace")
        except config.ConfigException:
            pass  # in a pod: no kubeconfig
    return Kube(make_api_client(kubeconfig, context)), namespace or "default"


def _unreachable(exc: Exception) -> JubakoError:
    return JubakoError(f"cannot reach the Kubernetes API: {exc}")


def register(app: typer.Typer) -> None:
    deploy_app = typer.Typer(help="Promote or roll back a BentoDeployment's canary.", no_args_is_help=True)

    @deploy_app.command("promote")
    def promote(
        name: str,
        namespace: str | None = NAMESPACE,
        kubeconfig: str | None = KUBECONFIG,
        context: str | None = CONTEXT,
        force: bool = typer.Option(False, "--force", help="Promote even if the canary's pods are not all ready."),
    ) -> None:
        """Serve the canary's version as the main revision and remove the canary."""
        import urllib3

        from jubako.operator.canary import promote as promote_canary

        kube, ns = _kube(kubeconfig, context, namespace)
        try:
            version = promote_canary(kube, ns, name, force=force)
        except urllib3.exceptions.HTTPError as exc:
            raise _unreachable(exc) from None
        typer.echo(f"{ns}/{name}: promoted {version}; the canary is removed")

    @deploy_app.command("rollback")
    def rollback(
        name: str,
        namespace: str | None = NAMESPACE,
        kubeconfig: str | None = KUBECONFIG,
        context: str | None = CONTEXT,
    ) -> None:
        """Remove the canary: every request goes to the main revision again."""
        import urllib3

        from jubako.operator.canary import rollback as remove_canary

        kube, ns = _kube(kubeconfig, context, namespace)
        try:
            tag = remove_canary(kube, ns, name)
        except urllib3.exceptions.HTTPError as exc:
            raise _unreachable(exc) from None
        typer.echo(f"{ns}/{name}: canary {tag} removed")

    app.add_typer(deploy_app, name="deploy")
