"""Declarative runbook executor: validate, render to Ansible, run, report."""

__version__ = "0.1.0"
