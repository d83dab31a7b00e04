"""One module per cloud function; each exposes ``endpoint`` (its HTTP contract) and ``handler`` (AWS Lambda).

A function module imports only shared.web at the top; the service modules it calls (and the libraries behind
them: pydantic, psycopg, PyJWT, stripe) are imported inside the function, so a Lambda's init phase stays short
and each library loads only in the functions whose requests use it.
"""
