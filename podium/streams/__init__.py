"""Redis: key names, connections, the fenced lock, heartbeats, dead letters, status, subscribers, an embedded server."""
