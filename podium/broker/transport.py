"""kombu's Redis transport, with two changes, each for an error that would otherwise stop a worker from inside
its event loop and leave the requests behind it unanswered:

- a queue item that is not a kombu message (not JSON, or JSON without the envelope) is dead-lettered with its
  raw bytes (it used to stop the worker, exit code 0);
- Redis refusing a write for memory never stops the worker ("Unrecoverable error: OutOfMemoryError") nor loses
  a message: acknowledging sends its two deletions without MULTI (Redis refuses a MULTI whole when memory is
  full, deletions on their own never); recording a message just taken off its queue as unacknowledged waits
  for memory with back-off, for as long as it takes (the message is then only in this process: giving up
  would lose it); a reject that requeues waits too, and after ``REQUEUE_PATIENCE_S`` leaves the message
  unacknowledged, to be redelivered after the visibility timeout.

Workers use it through ``broker_transport`` (see :func:`podium.workers.app.create_worker_app`); URLs keep
their ``redis://`` / ``rediss://`` form.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis
from kombu.transport import redis as kombu_redis
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import loads

from podium.coordination.dead_letters import dead_letter

log = logging.getLogger(__name__)

#: Raw bytes kept in the dead letter of an undecodable queue item.
RAW_BYTES_KEPT = 4096
#: How long a requeue waits for Redis memory before leaving the message to the visibility timeout.
REQUEUE_PATIENCE_S = 60.0


def envelope_problem(payload: Any) -> str | None:
    """Why a decoded queue item is not a kombu message envelope podium's worker can take, or None."""
    if not isinstance(payload, dict):
        return f"a JSON {type(payload).__name__}, not a message envelope"
    properties = payload.get("properties")
    if not isinstance(properties, dict):
        return "no properties object"
    if not isinstance(properties.get("delivery_tag"), str):
        return "no delivery_tag"
    info = properties.get("delivery_info")
    if not isinstance(info, dict) or not {"exchange", "routing_key"} <= info.keys():
        return "no delivery_info with exchange and routing_key"
    if not isinstance(payload.get("headers") or {}, dict):
        return "headers is not an object"
    if not isinstance(payload.get("body", ""), str):
        return "body is not a string"
    return None


def when_memory_frees(what: str, attempt: Any, patience_s: float | None = None) -> bool:
    """Run ``attempt`` until Redis has memory for it (back-off 0.1 s ... 5 s); False when ``patience_s`` ran out."""
    delay, waited = 0.1, 0.0
    while True:
        try:
            attempt()
            return True
        except redis.exceptions.OutOfMemoryError:
            if patience_s is not None and waited >= patience_s:
                return False
            log.warning("Redis has no memory to %s; trying again in %.1f s", what, delay)
            time.sleep(delay)
            waited, delay = waited + delay, min(delay * 2, 5.0)


class QoS(kombu_redis.QoS):
    def append(self, message: Any, delivery_tag: str) -> None:
        when_memory_frees(
            f"record message {delivery_tag} as delivered", lambda: super(QoS, self).append(message, delivery_tag)
        )

    def restore_visible(self, *args: Any, **kwargs: Any) -> None:
        """kombu's periodic restore of messages unacknowledged too long: skipped while Redis is full (it takes a
        lock, a write), done on the next round."""
        try:
            super().restore_visible(*args, **kwargs)
        except redis.exceptions.OutOfMemoryError:
            log.warning("Redis has no memory to restore unacknowledged messages now; the next round will")

    def _remove_from_indices(self, delivery_tag: str, pipe: Any = None) -> Any:
        """The unacked entry and its index entry removed; on its own (an ack), without MULTI, so a full Redis
        still takes the deletions (the hash first: an index entry left alone is harmless to kombu's restore)."""
        if pipe is not None:  # inside kombu's restore transaction: keep it whole
            return super()._remove_from_indices(delivery_tag, pipe)
        with self.channel.conn_or_acquire() as client:
            return (
                client.pipeline(transaction=False)
                .hdel(self.unacked_key, delivery_tag)
                .zrem(self.unacked_index_key, delivery_tag)
            )

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        done = when_memory_frees(
            f"requeue message {delivery_tag}",
            lambda: super(QoS, self).reject(delivery_tag, requeue),
            REQUEUE_PATIENCE_S,
        )
        if not done:
            log.error(
                "Redis has had no memory to requeue message %s for %.0f s; it stays unacknowledged and is "
                "redelivered after the visibility timeout",
                delivery_tag,
                REQUEUE_PATIENCE_S,
            )


class Channel(kombu_redis.Channel):
    QoS = QoS

    def _brpop_read(self, **options: Any) -> bool:
        try:
            try:
                dest__item = self.client.parse_response(self.client.connection, "BRPOP", **options)
            except self.connection_errors:
                self.client.connection.disconnect()
                raise
            if not dest__item:
                raise kombu_redis.Empty()
            dest, item = dest__item
            dest = bytes_to_str(dest).rsplit(self.sep, 1)[0]
            self._queue_cycle.rotate(dest)
            payload = self._decoded(item, dest)
            if payload is not None:
                self.connection._deliver(payload, dest)
            return True
        finally:
            # kombu declares `_in_poll = False` but stores a connection or None in it (as here) itself
            self._in_poll = None  # type: ignore[assignment]
            flush = getattr(self, "_flush_brpop_reauth", None)
            if flush is not None:
                flush()

    def _decoded(self, item: bytes, queue: str) -> dict[str, Any] | None:
        """The message envelope of a queue item, or None after dead-lettering what cannot be one."""
        try:
            payload = loads(bytes_to_str(item))
            problem = envelope_problem(payload)
            if problem is None:
                self.Message(payload, channel=self)  # the body must decode too
        except Exception as exc:
            problem = f"{type(exc).__name__}: {exc}"
        if problem is None:
            return payload
        raw = item[:RAW_BYTES_KEPT]
        text = raw.decode("utf-8", "backslashreplace") if isinstance(raw, bytes) else str(raw)
        with self.conn_or_acquire() as client:
            dead_letter(
                client,
                "queue",
                text,
                f"queue {queue}: an item of {len(item)} bytes is not a message ({problem}); it was removed",
            )
        return None


class Transport(kombu_redis.Transport):
    Channel = Channel
