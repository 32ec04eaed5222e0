"""Resumable streams: sequenced server-to-client messages that survive reconnects."""
