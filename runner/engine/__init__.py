"""The engine: render a runbook into an Ansible project, run it with ansible-runner, turn its events into results;
the run itself, host leases, journal, resume, planning."""
