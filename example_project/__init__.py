"""The example project: a chat served over HTTP and WebSocket by django_realtime."""
