"""Pydantic models shared by every process: config, upstream payloads, events, and their exports."""
