#!/usr/bin/env python3
"""The CDK app: one stack, SpindleStack (spindle_stack.py). `cdk synth` / `cdk deploy` run
it through cdk.json, or run it directly (`.venv/bin/python app.py`) to write cdk.out."""

from __future__ import annotations

import os

import aws_cdk as cdk
from spindle_stack import SpindleStack

app = cdk.App()
SpindleStack(
    app,
    app.node.try_get_context("stack_name") or "Spindle",
    env=cdk.Environment(
        account=os.environ.get("CDK_DEFAULT_ACCOUNT"), region=os.environ.get("CDK_DEFAULT_REGION")
    ),
    description="Spindle, a GA4GH WES service (docs/deploy.md)",
)
app.synth()
