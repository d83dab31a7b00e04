"""One module per cloud function; each exposes ``router`` (local server) and ``handler`` (AWS Lambda)."""
