"""Redis: key names, connections, the fenced lock and the fenced commit, heartbeats, dead letters, status,
subscribers, an embedded server."""
