"""The records of a run: the typed report and its formats (json, md, html, junit), history, metrics, notifications,
redaction."""
