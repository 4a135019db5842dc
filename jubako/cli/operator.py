"""`jubako operator run`: the Kubernetes operator for BentoDeployments (docs/operator.md)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    operator_app = typer.Typer(help="Run the Kubernetes operator.", no_args_is_help=True)

    @operator_app.command("run")
    def run(
        namespace: list[str] = typer.Option(
            [], "--namespace", "-n", help="Namespace to watch (repeatable)."
        ),
        all_namespaces: bool = typer.Option(
            False, "--all-namespaces", "-A", help="Watch every namespace."
        ),
        verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging."),
    ) -> None:
        """Reconcile BentoDeployments until stopped. Settings: JUBAKO_OPERATOR_* variables."""
        # kopf and kubernetes load here, so `jubako --help` stays fast.
        from jubako.errors import ConfigError
        from jubako.operator.config import load
        from jubako.operator.run import configure_logging
        from jubako.operator.run import run as run_operator

        if namespace and all_namespaces:
            raise ConfigError("use --namespace or --all-namespaces, not both")
        settings = load()
        if namespace or all_namespaces:
            settings = settings.model_copy(update={"namespaces": list(namespace)})
        configure_logging(verbose)
        run_operator(settings)

    app.add_typer(operator_app, name="operator")
    # The operator's other commands: `jubako deploy promote|rollback` edit a BentoDeployment.
    from . import deploy

    deploy.register(app)
