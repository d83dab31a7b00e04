"""Teams and agencies: API keys, clients and campaigns."""
