"""The runbook language: YAML with positions, schema, loader and semantic checks, role specs, type checks,
templates, params, the typed model, durations, the severity policy."""
