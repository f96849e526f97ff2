#!/usr/bin/env python3
"""CDK entry point (``cdk.json`` runs this): one stage per environment.

``-c environments=local,dev`` limits the stages built; the default is all of them.
"""

from __future__ import annotations

from stacks.app import build_app, new_app


def main() -> None:
    app = new_app()
    selected = app.node.try_get_context("environments")
    environments = [e.strip() for e in str(selected).split(",") if e.strip()] if selected else None
    build_app(app, environments=environments).synth()


if __name__ == "__main__":
    main()
