"""Pipedrive exports in: pulled from the API (pull) or generated as a realistic sample (sample)."""
