"""The scale-out store: heatmaps in Redis, shared by any number of stateless collectors.

Layout. Every key of one app starts with ``coldmod:{<tag>}:`` where the tag
is the app's name (or a digest of it when the name holds braces), so in
Redis Cluster all of an app's keys share one hash slot and every script is
single-slot, while apps spread over the cluster (``?cluster=1`` in the URL:
redis-py's RedisCluster, reached through any node, sends each script to the
node owning its app's slot):

| key | type | holds |
|---|---|---|
| ``…:meta`` | hash | name, last fingerprint, registered_ms, updated_ms, drop counts, next_version, pruned_day, layout |
| ``…:src`` | hash | key → JSON ``[path, lines]`` (the union of the live versions' sets) |
| ``…:since`` | hash | key → tracked_since_ms (present for every key of the union) |
| ``…:calls`` | hash | key → calls (only keys that ran; exact 64-bit integers) |
| ``…:est`` / ``…:lb`` | sets | keys whose count is estimated / only a lower bound |
| ``…:first`` / ``…:last`` | hashes | key → first seen ms (``:day`` if history began earlier) / ``last_ms:day:calls`` |
| ``…:ver`` | hash | fingerprint → ``id|first_seen|last_seen|keys|label`` (the live versions) |
| ``…:kv`` | hash | key → the comma-joined ids of the versions that have it |
| ``…:h:<bucket>:<key>`` | hash | the key's calls per UTC day with calls: field ``day % 32`` of ``day // 32`` |
| ``…:i:<instance>`` | hash | the instance's applied sequences → unknown keys, and ``floor`` |
| ``…:lease:<fingerprint>`` | string | ``expires_ms:holder``: who sends that version's set (``Store.lease``) |
| ``…:f:<instance>`` | string | the version the instance registered (its Reports without a fingerprint refresh it) |
| ``coldmod:apps`` | sorted set | every app's name (score 0: ListApps pages by name with ZRANGEBYLEX) |

Writes are Lua scripts (:mod:`coldmod_cli.server.redis_scripts`): a Report
checks its batch id, applies every increment and records the id in one
script, so it is applied at most once even when resent to another collector;
a Register adds or refreshes its version in one script (never dropping
another version's keys), and ``retire`` drops silent versions and the keys
only they had. A Report also adds each delta to its key's day in the history
and refreshes its version's last seen, in the same script as the batch id.
Group commit: a collector's Reports waiting at the same moment go in one
script per app (each batch id still checked and recorded on its own, the
deltas merged per key), so a key that many tracers report costs Redis one
update per group, not per batch. Fetch reads the app's keys and its history
sums (a read-only script) in one MULTI/EXEC: a consistent snapshot. A call
returns only after Redis answered, so nothing is acknowledged that Redis did
not accept; how much of it survives a Redis crash is Redis's persistence (see
``durability``).

Upgrade: an app written before versions (no ``layout`` in its meta) is
brought to this layout when a store opens (the UPGRADE script, idempotent):
its fingerprint becomes its first version, holding every key; counts and
timestamps stay; its history starts then.

Dedupe window: each instance keeps its last ``DEDUPE_KEEP`` sequences and a
floor (every sequence at or below it counts as applied: tracers send in
order and resend only the unacknowledged batch); the record expires
``DEDUPE_TTL_MS`` (7 days) after the instance's last batch. A batch resent
later than that would be applied again; a tracer never holds one that long.

Changes: every write script PUBLISHes ``{o: origin, a: app, k: kind}`` on
``coldmod:changes``. Subscribers hear their own collector's writes at once
(synchronously, like SQLite, with the report's keys) and every other
collector's through one subscriber thread, so a web UI on collector A sees
counts that arrived at B. A report heard from another collector carries no
keys (the message stays a few bytes whatever the batch): fetch the app again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import queue
import secrets
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from itertools import repeat
from operator import itemgetter
from typing import Any

from coldmod_cli.server import redis_scripts
from coldmod_cli.server.store import (
    DAY_MS,
    DEFAULT_MAX_APPS,
    DEFAULT_RETIRE_AFTER_MS,
    HISTORY_KEEP_DAYS,
    AppSummary,
    Batch,
    Change,
    CountOverflow,
    Heatmap,
    IgnoreRules,
    RegisterResult,
    ReportResult,
    Source,
    StoreError,
    StoreInfo,
    StoreUnavailable,
    TooManyApps,
    UnknownApp,
    Version,
    entries,
    gc_paused,
    utc_day,
)

__all__ = ["PASSWORD_ENV", "TLS_CA_ENV", "RedisStore", "durability", "follow", "parse_url"]

log = logging.getLogger(__name__)

#: The Redis password (or ACL user's password), so that it never appears in a process list.
PASSWORD_ENV = "COLDMOD_REDIS_PASSWORD"  # noqa: S105 - the variable's name, not a password
#: CA bundle that signs a ``rediss://`` server's certificate (else the ``ca`` URL option, else the system's).
TLS_CA_ENV = "COLDMOD_REDIS_CA"

INDEX = "coldmod:apps"
CHANNEL = "coldmod:changes"
#: Sequences each instance remembers explicitly; older ones fold into its floor.
DEDUPE_KEEP = 32
DEDUPE_TTL_MS = 7 * 24 * 3600 * 1000
#: Seconds to connect and to wait for an answer: with Redis down, collectors answer UNAVAILABLE quickly.
CONNECT_TIMEOUT_S = 1.0
SOCKET_TIMEOUT_S = 10.0
#: Connections per collector (one per concurrently running call).
MAX_CONNECTIONS = 64
#: Report writers per collector: each sends everything waiting as one script per app (group commit),
#: so a key that many tracers report costs Redis one update per group instead of one per batch.
WRITERS = 2
#: Most deltas one group carries (one script's run time stays short: Redis runs one at a time).
GROUP_DELTAS = 50_000
MAX_COUNT = 2**63 - 1
#: How long after its expiry an unreleased lease's key stays (housekeeping only: expiry is judged on now_ms).
LEASE_KEEP_MS = 3_600_000
_FLAGS = ("", "l", "e", "el")  # index: estimated * 2 + lower_bound


def _import_redis() -> Any:
    try:
        import redis
    except ImportError:
        raise StoreError("the Redis store needs the redis package: pip install 'coldmod-cli[redis]'") from None
    return redis


@dataclass(frozen=True, slots=True)
class _Waiting:
    """A Report waiting for its group."""

    batch: Batch
    future: Future[ReportResult]


@dataclass(frozen=True)
class RedisTarget:
    """What a ``redis://`` or ``rediss://`` URL names (the password is never printed)."""

    host: str
    port: int
    db: int
    username: str | None
    password: str | None
    tls: bool
    ca: str | None
    cluster: bool = False  # ?cluster=1: a Redis Cluster, reached through any of its nodes

    @property
    def display(self) -> str:
        """The URL without credentials."""
        scheme = "rediss" if self.tls else "redis"
        host = f"[{self.host}]" if ":" in self.host else self.host
        user = f"{self.username}@" if self.username else ""
        return f"{scheme}://{user}{host}:{self.port}/{self.db}" + ("?cluster=1" if self.cluster else "")


def parse_url(url: str, env: dict[str, str] | None = None) -> RedisTarget:
    """Read ``redis[s]://[user[:password]@]host[:port][/db][?ca=PATH][&cluster=1]``; raises StoreError if wrong.

    ``cluster=1``: host:port is one node of a Redis Cluster (any; the client
    learns the others from it), and the database must be 0 (a cluster has no other).
    """
    env = dict(os.environ) if env is None else env
    form = "redis://[user:password@]host:port/db or rediss://host:port/db?ca=/path/ca.pem (?cluster=1: a cluster)"
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("redis", "rediss"):
        raise StoreError(f"the store {url!r} is not a Redis URL; use {form}")
    try:
        port = parts.port or 6379
    except ValueError:
        raise StoreError(f"the store URL's port is not a number from 1 to 65535; use {form}") from None
    host = parts.hostname
    if not host:
        raise StoreError(f"the store URL names no Redis host; use {form}")
    path = parts.path.strip("/")
    if path and not path.isdigit():
        raise StoreError(f"the store URL's database {path!r} is not a number; use {form}")
    query = urllib.parse.parse_qs(parts.query)
    unknown = sorted(set(query) - {"ca", "cluster"})
    if unknown:
        raise StoreError(
            f"the store URL has the unknown option {unknown[0]!r}; the options are ?ca=/path/ca.pem and ?cluster=1"
        )
    cluster_flag = (query.get("cluster") or ["0"])[-1].lower()
    if cluster_flag not in _CLUSTER_FLAGS:
        raise StoreError(f"the store URL's cluster={cluster_flag!r} is not 1 or 0; use ?cluster=1 for a Redis Cluster")
    cluster = _CLUSTER_FLAGS[cluster_flag]
    if cluster and path not in ("", "0"):
        raise StoreError(f"a Redis Cluster has only database 0, not {path}; use redis://host:port/0?cluster=1")
    ca = (query.get("ca") or [""])[-1] or env.get(TLS_CA_ENV) or None
    if ca and scheme != "rediss":
        raise StoreError("a CA bundle is for TLS: use a rediss:// URL with it")
    if ca and not os.path.isfile(ca):
        raise StoreError(f"the Redis CA bundle {ca} does not exist; give the path of a PEM file")
    password = urllib.parse.unquote(parts.password) if parts.password else env.get(PASSWORD_ENV) or None
    username = urllib.parse.unquote(parts.username) if parts.username else None
    return RedisTarget(host, port, int(path or 0), username, password, scheme == "rediss", ca, cluster)


#: What ``?cluster=`` may say.
_CLUSTER_FLAGS = {"1": True, "yes": True, "true": True, "on": True}
_CLUSTER_FLAGS |= {"0": False, "no": False, "false": False, "off": False}


def _tag(app: str) -> str:
    """The app's hash tag: its name, or a digest when braces would cut the tag short."""
    if "{" in app or "}" in app:
        return "h" + hashlib.sha256(app.encode()).hexdigest()[:32]
    return app


@dataclass(frozen=True)
class AppKeys:
    """The Redis keys of one app, in the order the scripts take them."""

    meta: str
    src: str
    since: str
    calls: str
    est: str
    lb: str
    first: str
    last: str
    ver: str
    kv: str

    @classmethod
    def of(cls, app: str) -> AppKeys:
        """The keys of ``app`` (all in one hash slot)."""
        prefix = f"coldmod:{{{_tag(app)}}}:"
        names = ("meta", "src", "since", "calls", "est", "lb", "first", "last", "ver", "kv")
        return cls(*(prefix + name for name in names))

    def all(self) -> list[str]:
        """Every fixed key, in script order (the history buckets are named by the scripts)."""
        return [
            self.meta,
            self.src,
            self.since,
            self.calls,
            self.est,
            self.lb,
            self.first,
            self.last,
            self.ver,
            self.kv,
        ]

    def history(self, bucket: int, key: str) -> str:
        """One key's history hash for days ``bucket * 32`` to ``bucket * 32 + 31`` (same slot)."""
        return f"{self.meta[: -len('meta')]}h:{bucket}:{key}"

    def instance(self, instance_id: str) -> str:
        """The dedupe record of one instance (same slot)."""
        return self.meta[: -len("meta")] + "i:" + instance_id

    def lease(self, fingerprint: str) -> str:
        """The one-sender lease on a version's set (same slot)."""
        return self.meta[: -len("meta")] + "lease:" + fingerprint


# What each persistence setting loses, for `coldmod status` (Info.durability) and the README.
_DURABILITY = {
    ("yes", "always"): "Redis AOF with appendfsync always: every acknowledged batch is on disk before the ack;"
    " a crash or power loss loses nothing acknowledged",
    ("yes", "everysec"): "Redis AOF with appendfsync everysec: a Redis crash loses nothing acknowledged, a power"
    " loss or OS crash can lose the last second or two of acknowledged batches",
    ("yes", "no"): "Redis AOF with appendfsync no: a Redis crash loses nothing acknowledged, a power loss or OS"
    " crash can lose the last ~30 s of acknowledged batches (the OS flushes when it likes)",
    ("no", ""): "Redis without AOF (RDB snapshots at best): a Redis restart loses every batch acknowledged since"
    " the last snapshot; enable appendonly yes",
}


def durability(appendonly: str, appendfsync: str) -> str:
    """What a Redis crash loses with these settings (one sentence)."""
    if appendonly != "yes":
        return _DURABILITY[("no", "")]
    return _DURABILITY.get(
        ("yes", appendfsync), f"Redis AOF with appendfsync {appendfsync or 'unknown'}: see the Redis documentation"
    )


class RedisStore:
    """The :class:`~coldmod_cli.server.store.Store` in Redis (see the module docstring)."""

    def __init__(self, url: str, *, max_apps: int = DEFAULT_MAX_APPS, env: dict[str, str] | None = None) -> None:
        """Connect, check the server answers and accepts our credentials and database; raises StoreError."""
        redis = _import_redis()
        self._redis_mod = redis
        self.target = parse_url(url, env)
        self.url = self.target.display
        self.max_apps = max_apps
        self._origin = secrets.token_hex(8)  # tells this collector's own published changes apart
        retry = redis.retry.Retry(redis.backoff.ExponentialBackoff(cap=0.2, base=0.02), 2)
        options: dict[str, Any] = {
            "host": self.target.host,
            "port": self.target.port,
            "db": self.target.db,
            "username": self.target.username,
            "password": self.target.password,
            "socket_connect_timeout": CONNECT_TIMEOUT_S,
            "socket_timeout": SOCKET_TIMEOUT_S,
            "retry": retry,
            "retry_on_error": [redis.exceptions.ConnectionError, redis.exceptions.TimeoutError],
            "health_check_interval": 30,
            "decode_responses": True,
            "max_connections": MAX_CONNECTIONS,
            "timeout": SOCKET_TIMEOUT_S,  # waiting for a free connection of the pool
        }
        self._pool: Any = None
        self._subscribers: list[Callable[[Change], None]] = []
        self._listener: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._on_close: list[Callable[[], None]] = []
        self._queue: queue.SimpleQueue[_Waiting | None] = queue.SimpleQueue()
        self._writers: list[threading.Thread] = []
        self._client: Any = None
        try:
            with self._errors("open"):
                self._client = self._cluster_client(options) if self.target.cluster else self._plain_client(options)
                self._version = str(self._client.info("server").get("redis_version", "?"))
                major = self._version.split(".")[0]
                if major.isdigit() and int(major) < 7:  # scripts need Redis 7's #!lua flags
                    raise StoreError(
                        f"Redis at {self.url} is version {self._version}; the Redis store needs Redis 7 or newer"
                    )
        except StoreError:
            self._disconnect()
            raise
        self._scripts = {
            name: self._client.register_script(getattr(redis_scripts, name)) for name in redis_scripts.__all__
        }
        self._upgrade()

    def _upgrade(self) -> None:
        """Bring every app written before versions and history to today's layout (see the module docstring).

        Idempotent and per app in one script, so collectors opening together
        upgrade each app once; an app without a fingerprint gets its set's.
        """
        from coldmod_trace.keys import sources_fingerprint

        with self._errors("open"):
            for name in self._client.zrange(INDEX, 0, -1):
                keys = AppKeys.of(name)
                if self._client.hexists(keys.meta, "layout"):
                    continue
                fallback = ""
                if not self._client.hget(keys.meta, "fingerprint"):
                    located = self._client.hgetall(keys.src)
                    fallback = sources_fingerprint((key, *json.loads(value)) for key, value in located.items())
                self._scripts["UPGRADE"](keys=keys.all(), args=[_now_ms(), HISTORY_KEEP_DAYS, fallback])

    def _plain_client(self, options: dict[str, Any]) -> Any:
        """One Redis server: a blocking pool of connections (callers wait for a free one)."""
        redis = self._redis_mod
        if self.target.tls:
            options |= {
                "connection_class": redis.connection.SSLConnection,
                "ssl_ca_certs": self.target.ca,
                "ssl_cert_reqs": "required",
            }
        self._pool = redis.BlockingConnectionPool(**options)
        return redis.Redis(connection_pool=self._pool)

    def _cluster_client(self, options: dict[str, Any]) -> Any:
        """A Redis Cluster: redis-py's RedisCluster learns the nodes and sends each command to its key's slot.

        Every script names only keys of one app (one hash slot: see AppKeys),
        so each runs whole on the node that owns the app; the app index is a
        key of its own, on whichever node owns it.
        """
        redis = self._redis_mod
        # Not for a cluster's per-node connections: a database (only 0), the pool wait (the pool class's default).
        dropped = ("db", "retry_on_error", "health_check_interval", "timeout")
        cluster = {k: v for k, v in options.items() if k not in dropped}
        cluster["connection_pool_class"] = redis.BlockingConnectionPool  # callers wait for a free connection
        if self.target.tls:
            cluster |= {"ssl": True, "ssl_ca_certs": self.target.ca, "ssl_cert_reqs": "required"}
        return redis.RedisCluster(**cluster)

    def _disconnect(self) -> None:
        """Close the client and its connections (a plain pool or every node's)."""
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
        if self._pool is not None:
            self._pool.disconnect()

    # ------------------------------------------------------------- errors --

    @contextlib.contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """Turn redis-py's errors into one sentence: StoreError when opening, StoreUnavailable after."""
        exc_mod = self._redis_mod.exceptions
        kind = StoreError if doing == "open" else StoreUnavailable
        try:
            yield
        except exc_mod.AuthenticationError as exc:
            raise kind(self._auth_message(_first_line(exc))) from None
        except exc_mod.ConnectionError as exc:
            text = _first_line(exc)
            if "DB index" in text or "invalid DB" in text.lower():
                raise kind(
                    f"Redis at {self.url} has no database {self.target.db} ({text}); choose a database number"
                    " the server has (databases in redis.conf)"
                ) from None
            if "NOAUTH" in text or "WRONGPASS" in text or "NOPERM" in text:
                raise kind(self._auth_message(text)) from None
            if "SSL" in text or "certificate" in text:
                raise kind(
                    f"the TLS connection to Redis at {self.url} failed ({text}); check rediss:// and ?ca="
                ) from None
            raise kind(f"Redis at {self.url} is unreachable ({text}); retry when it is back") from None
        except exc_mod.TimeoutError:
            raise kind(f"Redis at {self.url} did not answer within {SOCKET_TIMEOUT_S:.0f} s; retry later") from None
        except exc_mod.ResponseError as exc:
            text = _first_line(exc)
            # redis-py turns the OOM prefix into OutOfMemoryError (newer) or keeps it (older).
            if isinstance(exc, getattr(exc_mod, "OutOfMemoryError", ())) or text.startswith("OOM"):
                raise kind(
                    f"Redis at {self.url} is out of memory (maxmemory reached, noeviction): nothing was stored;"
                    " raise maxmemory or free memory"
                ) from None
            if "NOAUTH" in text or "WRONGPASS" in text or "NOPERM" in text:
                raise kind(self._auth_message(text)) from None
            if "DB index" in text:
                raise kind(f"Redis at {self.url} has no database {self.target.db} ({text})") from None
            if text.startswith(("READONLY", "MASTERDOWN", "LOADING", "BUSY", "TRYAGAIN", "CLUSTERDOWN")):
                raise kind(f"Redis at {self.url} cannot take writes now ({text}); retry later") from None
            raise kind(f"Redis at {self.url} refused the {doing} ({text})") from None
        except exc_mod.RedisError as exc:
            raise kind(f"Redis at {self.url} failed the {doing} ({_first_line(exc)})") from None
        except exc_mod.RedisClusterException as exc:  # not a RedisError: no node answers, or not a cluster
            raise kind(
                f"the Redis Cluster at {self.url} cannot be used ({_first_line(exc)}); check that its nodes are up"
                " and that the URL names one of them (drop ?cluster=1 for a single Redis)"
            ) from None

    def _auth_message(self, text: str) -> str:
        """One sentence for a refused or missing password."""
        if "HELLO must be called" in text or "NOAUTH" in text or "Authentication required" in text:
            return (
                f"Redis at {self.url} asks for a password; set it in {PASSWORD_ENV}"
                " (and an ACL user's name in the URL: redis://user@host:port/db)"
            )
        return (
            f"Redis at {self.url} refused the credentials ({text}); check the user in the URL"
            f" and the password in {PASSWORD_ENV}"
        )

    # ------------------------------------------------------------- the API --

    def register(
        self,
        app: str,
        sources: Sequence[Source],
        now_ms: int,
        fingerprint: str = "",
        *,
        version: str = "",
        instance_id: str = "",
        ignore: IgnoreRules | None = None,
    ) -> RegisterResult:
        """Add or refresh the version ``fingerprint`` (its set ``sources``) in one script; see the Store protocol.

        A known fingerprint only refreshes its version; the fingerprint-less
        version ("") is replaced by each Register of it.
        """
        keys = AppKeys.of(app)
        unique = {s.key: s for s in sources}
        with self._errors("Register"):
            ignored = self._ignored(keys, unique, ignore) if ignore and (ignore.keys or ignore.files) else set()
        args: list[Any] = [app, now_ms, fingerprint, version, instance_id, CHANNEL, self._origin, DEDUPE_TTL_MS]
        args += (HISTORY_KEEP_DAYS, len(ignored), *ignored)
        for key, source in unique.items():
            if key not in ignored:
                args += (key, json.dumps([source.path, list(source.lines)], separators=(",", ":")))
        with self._errors("Register"):
            created = self._claim(app)
            try:
                kept, added, removed = self._scripts["REGISTER"](keys=keys.all(), args=args)
            except BaseException:
                if created:
                    with contextlib.suppress(Exception):
                        self._client.zrem(INDEX, app)
                raise
        self._notify(Change(app, "register"))
        return RegisterResult(int(kept), int(added), int(removed))

    def _ignored(self, keys: AppKeys, unique: dict[str, Source], ignore: IgnoreRules) -> set[str]:
        """The keys of the union and of this set that ``ignore`` names (by key, or by file with the tracer's globs).

        Read before the Register's script: a key another version registers in
        between stays until a Register with these rules comes again.
        """
        from coldmod_trace.rootmarker import compile_globs

        by_key = set(ignore.keys)
        if not ignore.files:  # by key alone: the script drops those the union has, no read needed
            return by_key
        matches = compile_globs(ignore.files)
        located = {key: json.loads(value)[0] for key, value in self._client.hgetall(keys.src).items()}
        located |= {key: source.path for key, source in unique.items()}
        return by_key | {key for key, path in located.items() if matches(path)}

    def knows_version(self, app: str, fingerprint: str) -> bool:
        """Whether the app has a live version with this fingerprint (its set is stored)."""
        with self._errors("read"):
            return bool(self._client.hexists(AppKeys.of(app).ver, fingerprint))

    def touch_version(
        self, app: str, fingerprint: str, now_ms: int, *, version: str = "", instance_id: str = ""
    ) -> None:
        """Refresh a known version as a fingerprint-only Register does: last seen, label, instance; no-op if unknown."""
        with self._errors("Register"):
            self._scripts["TOUCH"](
                keys=AppKeys.of(app).all(), args=[now_ms, fingerprint, version, instance_id, DEDUPE_TTL_MS]
            )

    def lease(self, app: str, fingerprint: str, holder: str, now_ms: int, lease_ms: int) -> bool:
        """Take the lease on sending this version's set until ``now_ms + lease_ms``; False while another holds one.

        Judged on the collectors' clock in one script, so it holds across every
        collector on this Redis; the key itself expires LEASE_KEEP_MS later
        (a lease nobody released is collected, never extended).
        """
        with self._errors("Register"):
            args = [holder, now_ms, lease_ms, max(lease_ms, 0) + LEASE_KEEP_MS]
            return bool(self._scripts["LEASE"](keys=[AppKeys.of(app).lease(fingerprint)], args=args))

    def release(self, app: str, fingerprint: str, holder: str = "") -> None:
        """Give the lease back ("" releases it whoever holds it: the set was stored or refused)."""
        with self._errors("Register"):
            self._scripts["RELEASE"](keys=[AppKeys.of(app).lease(fingerprint)], args=[holder])

    def _claim(self, app: str) -> bool:
        """Put the app in the index (refusing a new app beyond max_apps); True when it was new."""
        if self._client.zadd(INDEX, {app: 0}, nx=True) == 0:
            return False
        if self._client.zcard(INDEX) > self.max_apps:  # two collectors may race: both back off, never over
            self._client.zrem(INDEX, app)
            raise TooManyApps(
                f"the collector keeps at most {self.max_apps} apps; delete one (coldmod apps delete NAME)"
                " or start it with a larger --max-apps"
            )
        return True

    def fingerprint(self, app: str) -> str:
        """The fingerprint stored with the app's current set; "" for an unknown app."""
        with self._errors("read"):
            return str(self._client.hget(AppKeys.of(app).meta, "fingerprint") or "")

    def report(self, batch: Batch) -> ReportResult:
        """Apply the batch at most once; returns once Redis has applied it (with the others waiting then)."""
        item = _Waiting(batch, Future())
        with self._lock:
            if self._closed.is_set():
                raise StoreUnavailable("the store is closing")
            if not self._writers:
                self._writers = [
                    threading.Thread(target=self._write_loop, name=f"coldmod-redis-writer-{n}", daemon=True)
                    for n in range(WRITERS)
                ]
                for writer in self._writers:
                    writer.start()
            self._queue.put(item)
        return item.future.result()

    def _write_loop(self) -> None:
        """Take everything waiting (up to GROUP_DELTAS deltas), one script per app, answer each caller."""
        while True:
            first = self._queue.get()
            if first is None:
                self._queue.put(None)  # the other writers stop too
                return
            items, deltas = [first], len(first.batch.keys)
            while deltas < GROUP_DELTAS:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)  # for the next writer; this one finishes its group first
                    break
                items.append(item)
                deltas += len(item.batch.keys)
            by_app: dict[str, list[_Waiting]] = {}
            for item in items:
                by_app.setdefault(item.batch.app, []).append(item)
            for app, group in by_app.items():
                try:
                    self._apply(app, group)
                except Exception as exc:  # a bug, not a Redis error: fail these calls, keep the writer alive
                    log.exception("coldmod store: a Redis write failed")
                    for item in group:
                        if not item.future.done():
                            item.future.set_exception(StoreUnavailable(f"the store failed to apply a write ({exc})"))

    def _apply(self, app: str, group: list[_Waiting]) -> None:
        """One script for the group; a group whose merged sums are not exact in Lua is applied batch by batch."""
        keys = AppKeys.of(app)
        args: list[Any] = [app, _now_ms(), DEDUPE_KEEP, DEDUPE_TTL_MS, CHANNEL, self._origin, len(group)]
        for item in group:
            batch = item.batch
            # Flags travel only when some delta has one (the usual batch has none).
            flagged = any(batch.estimated) or any(batch.lower_bound)
            lower = batch.lower_bound or [False] * len(batch.keys)
            flags = [_FLAGS[e * 2 + b] for e, b in zip(batch.estimated, lower, strict=True)] if flagged else []
            args += (
                batch.sequence,
                batch.window_start_ms,
                batch.window_end_ms,
                batch.dropped_updates,
                "1" if flagged else "0",
                "\n".join(batch.keys),
                ",".join(map(str, batch.calls)),
                ",".join(flags),
                batch.fingerprint,
            )
        try:
            with self._errors("Report"):
                answer = self._scripts["REPORT"](
                    keys=[*keys.all(), *(keys.instance(i.batch.instance_id) for i in group)], args=args
                )
        except StoreError as exc:
            for item in group:
                item.future.set_exception(exc)
            return
        code = int(answer[0])
        if code in (-2, -3) and len(group) > 1:  # find the batch that overflows, or stay exact: one by one
            for item in group:
                self._apply(app, [item])
            return
        if code == -1:
            for item in group:
                item.future.set_exception(
                    UnknownApp(f"the app {app!r} is not registered; register it before reporting")
                )
            return
        if code == -2:
            group[0].future.set_exception(
                CountOverflow(
                    f"the batch would raise the count of {answer[1]!r} past {MAX_COUNT} (2**63 - 1);"
                    " nothing of it was applied"
                )
            )
            return
        results = [
            ReportResult(item.batch.sequence, int(answer[1 + 2 * n]) == 1, int(answer[2 + 2 * n]))
            for n, item in enumerate(group)
        ]
        if self._subscribers:
            dropped = set(answer[1 + 2 * len(group) :])
            changed = frozenset(
                k
                for item, result in zip(group, results, strict=True)
                if not result.duplicate
                for k, c in zip(item.batch.keys, item.batch.calls, strict=True)
                if c and k not in dropped
            )
            if changed:
                self._notify(Change(app, "report", changed))
        for item, result in zip(group, results, strict=True):
            item.future.set_result(result)

    def fetch(self, app: str, *, now_ms: int | None = None, quiet_days: int = 0, all_history: bool = False) -> Heatmap:
        """The app's heatmap, read in one MULTI/EXEC (a consistent snapshot); raises UnknownApp.

        The 7/30/90-day sums end with ``now_ms``'s UTC day (None: the wall
        clock); entries with no call in the last ``quiet_days`` days (today
        included), or every entry with ``all_history``, carry their days.
        """
        now = _now_ms() if now_ms is None else now_ms
        with gc_paused():  # a big heatmap is hundreds of thousands of new objects (see gc_paused)
            return self._fetch(app, now, quiet_days, all_history)

    def _fetch(self, app: str, now_ms: int, quiet_days: int, all_history: bool) -> Heatmap:
        """Read the app's hashes, sets and history sums in one MULTI/EXEC and build its entries."""
        keys = AppKeys.of(app)
        today = utc_day(now_ms)
        quiet_before = (today - quiet_days + 1) * DAY_MS if quiet_days > 0 else -1
        history_args = [today, quiet_before, 1 if all_history else 0]

        def read() -> list[Any]:
            pipe = self._client.pipeline(transaction=True)
            for key in (keys.meta, keys.src, keys.since, keys.calls):
                pipe.hgetall(key)
            pipe.smembers(keys.est)
            pipe.smembers(keys.lb)
            for key in (keys.first, keys.last, keys.ver, keys.kv):
                pipe.hgetall(key)
            self._scripts["FETCH_HISTORY"](keys=keys.all(), args=history_args, client=pipe)
            return list(pipe.execute())

        with self._errors("Fetch"):
            try:
                answers = read()
            except self._redis_mod.exceptions.NoScriptError:  # a cluster node that has not seen the script yet
                self._client.script_load(redis_scripts.FETCH_HISTORY)
                answers = read()
        meta, src, since, calls, est, lb, first, last, ver, kv, history = answers
        if not meta:
            raise UnknownApp(f"the app {app!r} is not registered")
        versions, index = _versions(ver)
        order = sorted(src)
        # Column by column, each a loop in C, and every source's JSON parsed in one call.
        located = json.loads("[" + ",".join(map(src.__getitem__, order)) + "]")
        # Few distinct memberships ("1", "1,2", ...): each parsed once.
        membership = {ids: tuple(sorted(index[i] for i in ids.split(",") if i in index)) for ids in set(kv.values())}
        last_ms = {key: int(value.partition(":")[0]) for key, value in last.items()}  # "ms:day:calls" or "ms"
        carries = (lambda key: True) if all_history else (lambda key: last_ms.get(key, 0) < quiet_before)
        sums, carried = _history_sums(history, today, carries)
        no_sums = (0, 0, 0)
        no_days: tuple[tuple[int, ...], tuple[int, ...]] = ((), ())
        windows = list(map(sums.get, order, repeat(no_sums)))
        days = list(map(carried.get, order, repeat(no_days)))
        built = entries(
            order,
            map(int, map(calls.get, order, repeat(0))),
            map(est.__contains__, order),
            map(int, map(itemgetter(0), map(str.partition, map(first.get, order, repeat("0")), repeat(":")))),
            map(last_ms.get, order, repeat(0)),
            map(int, map(since.get, order, repeat(0))),
            map(itemgetter(0), located),
            map(itemgetter(1), located),
            map(lb.__contains__, order),
            versions=map(membership.get, map(kv.get, order, repeat("")), repeat(())),
            calls_7d=map(itemgetter(0), windows),
            calls_30d=map(itemgetter(1), windows),
            calls_90d=map(itemgetter(2), windows),
            days=map(itemgetter(0), days),
            day_calls=map(itemgetter(1), days),
        )
        return Heatmap(
            app,
            built,
            int(meta.get("registered_ms", 0)),
            int(meta.get("dropped_unknown", 0)),
            int(meta.get("dropped_updates", 0)),
            versions=versions,
            now_ms=now_ms,
        )

    def history(self, app: str, keys: Sequence[str]) -> dict[str, tuple[tuple[int, ...], tuple[int, ...]]]:
        """``(days, day_calls)`` per key asked (keys the app lacks are absent); raises UnknownApp."""
        app_keys = AppKeys.of(app)
        with self._errors("read"):
            if not self._client.exists(app_keys.meta):
                raise UnknownApp(f"the app {app!r} is not registered")
            flat = self._scripts["HISTORY"](keys=app_keys.all(), args=list(dict.fromkeys(keys))) if keys else []
        return {flat[i]: _days(flat[i + 1]) for i in range(0, len(flat), 2)}

    def retire(self, now_ms: int, after_ms: int = DEFAULT_RETIRE_AFTER_MS) -> dict[str, list[Version]]:
        """Retire every version last seen before ``now_ms - after_ms``, app by app (one script each).

        Keys no remaining version has leave (counts and history); history
        days before ``utc_day(now_ms) - HISTORY_KEEP_DAYS`` are pruned.
        """
        retired: dict[str, list[Version]] = {}
        with self._errors("retire"):
            for name in self._client.zrange(INDEX, 0, -1):
                args = [name, now_ms, after_ms, HISTORY_KEEP_DAYS, CHANNEL, self._origin]
                answer = self._scripts["RETIRE"](keys=AppKeys.of(name).all(), args=args)
                gone = [_version(answer[i], answer[i + 1])[1] for i in range(1, len(answer), 2)]
                if gone:
                    retired[name] = sorted(gone, key=lambda v: (v.first_seen_ms, v.fingerprint))
                    self._notify(Change(name, "register"))
        return retired

    def list_apps(self, after: str = "", limit: int | None = None) -> list[AppSummary]:
        """Up to ``limit`` apps named after ``after``, sorted by name, calls summed exactly."""
        with self._errors("ListApps"):
            names = self._client.zrangebylex(
                INDEX, f"({after}" if after else "-", "+", start=0 if limit is not None else None, num=limit
            )
            pipe = self._client.pipeline(transaction=False)
            for name in names:
                keys = AppKeys.of(name)
                pipe.hget(keys.meta, "updated_ms")
                pipe.hlen(keys.src)
                pipe.hvals(keys.calls)
            answers = pipe.execute()
        summaries = []
        for i, name in enumerate(names):
            updated, n_keys, calls = answers[3 * i : 3 * i + 3]
            if updated is None:  # claimed by a Register still running (or that failed): not an app yet
                continue
            total = sum(map(int, calls))
            hot = sum(1 for c in calls if c != "0")
            summaries.append(AppSummary(name, int(n_keys), int(n_keys) - hot, min(total, MAX_COUNT), int(updated)))
        return summaries

    def count_apps(self) -> int:
        """How many apps the store holds."""
        with self._errors("read"):
            return int(self._client.zcard(INDEX))

    def reset(self, app: str, now_ms: int) -> int:
        """Zero the app's counts and restart its keys' tracking; returns the number of keys."""
        with self._errors("Reset"):
            n = int(self._scripts["RESET"](keys=AppKeys.of(app).all(), args=[app, now_ms, CHANNEL, self._origin]))
        if n < 0:
            raise UnknownApp(f"the app {app!r} is not registered")
        self._notify(Change(app, "reset"))
        return n

    def delete_app(self, app: str) -> int:
        """Delete the app and its heatmap; returns its number of keys; raises UnknownApp."""
        with self._errors("DeleteApp"):
            n = int(self._scripts["DELETE"](keys=AppKeys.of(app).all(), args=[app, CHANNEL, self._origin]))
            self._client.zrem(INDEX, app)
        if n < 0:
            raise UnknownApp(f"the app {app!r} is not registered")
        self._notify(Change(app, "delete"))
        return n

    def restore(self, heatmap: Heatmap, fingerprint: str = "") -> None:
        """Make the app exactly this heatmap (created if new), in one script: ``coldmod store copy``."""
        app = heatmap.app
        args: list[Any] = [
            app,
            fingerprint or (heatmap.versions[-1].fingerprint if heatmap.versions else ""),
            heatmap.registered_ms,
            _now_ms(),
            heatmap.dropped_unknown,
            heatmap.dropped_updates,
            CHANNEL,
            self._origin,
        ]
        versions = heatmap.versions
        everyone = ""
        if not versions:  # a heatmap from an older store: one version holds every key
            n = len(heatmap.entries)
            versions = [Version(fingerprint, "", heatmap.registered_ms, heatmap.registered_ms, n)]
            everyone = "1"
        oldest = min((d for e in heatmap.entries for d in e.days[:1]), default=None)
        line = utc_day(_now_ms()) - HISTORY_KEEP_DAYS
        args += (line if oldest is None else min(oldest, line), len(versions))
        for v in versions:
            args += (v.fingerprint, v.first_seen_ms, v.last_seen_ms, v.label)
        for e in heatmap.entries:
            source = json.dumps([e.path, list(e.lines)], separators=(",", ":"))
            flag = _FLAGS[e.estimated * 2 + e.lower_bound]
            members = everyone or ",".join(str(i + 1) for i in e.versions)
            history = ",".join(f"{d}:{c}" for d, c in zip(e.days, e.day_calls, strict=True))
            # Days before the first seen day (a window begun before the key was tracked) are marked on it.
            first: int | str = e.first_seen_ms
            if e.days and e.days[0] < utc_day(e.first_seen_ms):
                first = f"{e.first_seen_ms}:{e.days[0]}"
            args += (
                e.key,
                source,
                e.calls,
                flag,
                first,
                e.last_seen_ms,
                e.tracked_since_ms,
                members,
                history,
            )
        with self._errors("copy"):
            created = self._claim(app)
            try:
                self._scripts["RESTORE"](keys=AppKeys.of(app).all(), args=args)
            except BaseException:
                if created:
                    with contextlib.suppress(Exception):
                        self._client.zrem(INDEX, app)
                raise
        self._notify(Change(app, "register"))

    def info(self) -> StoreInfo:
        """Redis's address and version, and what its persistence settings lose on a crash."""
        try:
            with self._errors("read"):
                persistence = self._client.info("persistence")
                appendonly = "yes" if persistence.get("aof_enabled") else "no"
                try:
                    appendfsync = str(self._client.config_get("appendfsync").get("appendfsync", ""))
                except self._redis_mod.exceptions.ResponseError:  # CONFIG renamed or refused (managed Redis)
                    appendfsync = ""
        except StoreUnavailable as exc:
            return StoreInfo(self.url, f"unknown: {exc}")
        return StoreInfo(f"{self.url} (Redis {self._version})", durability(appendonly, appendfsync))

    def subscribe(self, callback: Callable[[Change], None]) -> Callable[[], None]:
        """Call ``callback`` after each write of any collector on this Redis; returns the unsubscriber."""
        with self._lock:
            self._subscribers = [*self._subscribers, callback]
            if self._listener is None and not self._closed.is_set():
                self._listener = threading.Thread(target=self._listen, name="coldmod-redis-changes", daemon=True)
                self._listener.start()

        def unsubscribe() -> None:
            with self._lock:
                self._subscribers = [s for s in self._subscribers if s is not callback]

        return unsubscribe

    def connect_keys(self, broker: Any = None) -> Any:
        """The connect broker's key book on this Redis (keys issued by any collector pair on all).

        Given the collector's ``broker``, its sessions are carried across
        collectors too (a CLI attached here, a page on another collector).
        """
        from coldmod_cli.web.redis_broker import RedisKeyBook, RedisSessions

        if broker is not None:
            sessions = RedisSessions(broker, self._client)
            self._on_close.append(sessions.close)
        return RedisKeyBook(self._client)

    def close(self) -> None:
        """Stop the change listener and close the connections. Idempotent."""
        if self._closed.is_set():
            return
        with self._lock:  # nothing is queued after the writers' stop
            self._closed.set()
            writers = self._writers
            if writers:
                self._queue.put(None)
        for writer in writers:  # each finishes what was queued before close
            writer.join()
        for stop in self._on_close:
            stop()
        listener = self._listener
        if listener is not None:
            listener.join(5)
        self._disconnect()

    # ------------------------------------------------------------ plumbing --

    def _notify(self, change: Change) -> None:
        for callback in self._subscribers:
            try:
                callback(change)
            except Exception:
                log.exception("coldmod store: a change subscriber failed")

    def _listen(self) -> None:
        """Deliver other collectors' changes; after a lost connection, tell subscribers to refetch every app."""

        def resync() -> None:  # changes published while we were away are gone: everything may have changed
            for name in self._client.zrange(INDEX, 0, -1):
                self._notify(Change(name, "register"))

        follow(self._client, CHANNEL, self._deliver, self._closed, resync)

    def _deliver(self, data: str) -> None:
        try:
            message = json.loads(data)
            if message.get("o") == self._origin:
                return  # our own write: its subscribers were called when it returned
            change = Change(str(message["a"]), str(message["k"]), frozenset(message.get("keys") or ()))
        except (ValueError, KeyError, TypeError, AttributeError):
            log.warning("coldmod store: ignored a malformed change message")
            return
        self._notify(change)


def follow(
    client: Any,
    channel: str,
    deliver: Callable[[str], None],
    closed: threading.Event,
    resync: Callable[[], None] | None = None,
) -> None:
    """Call ``deliver(data)`` for each message on ``channel`` until ``closed``; reconnect with backoff.

    After a lost connection, ``resync()`` runs once the subscription is back
    (messages published meanwhile are lost: pub/sub keeps nothing).
    """
    import redis

    backoff = 0.1
    lost = False
    while not closed.is_set():
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.subscribe(channel)
            if lost and resync is not None:
                resync()
            lost = False
            backoff = 0.1
            while not closed.is_set():
                message = pubsub.get_message(timeout=0.5)
                if message is not None and message.get("type") == "message":
                    try:
                        deliver(message["data"])
                    except Exception:
                        log.exception("coldmod: a Redis message on %s could not be handled", channel)
        except redis.RedisError as exc:
            if not lost:
                log.warning("coldmod: lost the Redis feed %s (%s); reconnecting", channel, _first_line(exc))
            lost = True
            closed.wait(backoff)
            backoff = min(backoff * 2, 2.0)
        finally:
            with contextlib.suppress(Exception):
                pubsub.close()


def _version(fingerprint: str, record: str) -> tuple[str, Version]:
    """(id, Version) from a ``ver`` record ``id|first_seen|last_seen|keys|label``."""
    version_id, first, last, keys, label = record.split("|", 4)
    return version_id, Version(fingerprint, label, int(first), int(last), int(keys))


def _versions(ver: dict[str, str]) -> tuple[list[Version], dict[str, int]]:
    """The app's versions, oldest first (then in creation order), and each one's index by its id."""
    parsed = sorted((_version(fp, record) for fp, record in ver.items()), key=lambda p: (p[1].first_seen_ms, int(p[0])))
    return [v for _, v in parsed], {version_id: n for n, (version_id, _) in enumerate(parsed)}


def _days(packed: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``"day:calls,…"`` as ascending (days, day_calls)."""
    if not packed:
        return (), ()
    merged: dict[int, int] = {}
    for item in packed.split(","):  # a day may come twice: in its bucket and in the key's last value
        day, calls = item.split(":")
        merged[int(day)] = merged.get(int(day), 0) + int(calls)
    ordered = sorted(merged.items())
    return tuple(d for d, _ in ordered), tuple(c for _, c in ordered)


def _history_sums(
    flat: list[str], today: int, carries: Callable[[str], bool]
) -> tuple[dict[str, tuple[int, int, int]], dict[str, tuple[tuple[int, ...], tuple[int, ...]]]]:
    """FETCH_HISTORY's answer: the 7/30/90-day sums per key, and the days of the keys that carry them.

    A sum past 2**53 comes as "" with the key's days (doubles are not exact
    there): it is summed here, and the days stay only if ``carries(key)``.
    """
    sums: dict[str, tuple[int, int, int]] = {}
    carried: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}
    for i in range(0, len(flat), 5):
        key, s7, s30, s90, packed = flat[i : i + 5]
        days = _days(packed)
        if s90 == "":
            sums[key] = tuple(  # type: ignore[assignment]
                sum(c for d, c in zip(*days, strict=True) if d > today - window) for window in (7, 30, 90)
            )
            if not carries(key):
                continue
        else:
            sums[key] = (int(s7), int(s30), int(s90))
        if packed:
            carried[key] = days
    return sums, carried


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
