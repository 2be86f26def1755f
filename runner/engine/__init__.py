"""The engine: render a runbook into an Ansible project, run it with ansible-runner, turn its events into results;
the run itself (run loop, approvals, playbook calls under the host leases, step outputs), journal, resume,
planning and the check-mode dry run."""
