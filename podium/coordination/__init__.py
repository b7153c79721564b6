"""What podium's processes coordinate through, held in Redis: key names and connections, the fenced lock and
the fenced commit, heartbeats, core claims per host, the ready workers, requests in flight, dead letters, sent
requests, key retention, the eviction/persistence check, status, the channel's subscribers, an embedded server."""
