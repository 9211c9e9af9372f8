from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ProcessIdentity(_message.Message):
    __slots__ = ("instance_id", "pid", "hostname", "runtime", "engine", "tracer_version", "mode")
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_FIELD_NUMBER: _ClassVar[int]
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    TRACER_VERSION_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    pid: int
    hostname: str
    runtime: str
    engine: str
    tracer_version: str
    mode: str
    def __init__(self, instance_id: _Optional[str] = ..., pid: _Optional[int] = ..., hostname: _Optional[str] = ..., runtime: _Optional[str] = ..., engine: _Optional[str] = ..., tracer_version: _Optional[str] = ..., mode: _Optional[str] = ...) -> None: ...

class TraceSource(_message.Message):
    __slots__ = ("key", "path", "lines")
    KEY_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    key: str
    path: str
    lines: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, key: _Optional[str] = ..., path: _Optional[str] = ..., lines: _Optional[_Iterable[int]] = ...) -> None: ...

class RegisterRequest(_message.Message):
    __slots__ = ("app", "process", "sources", "fingerprint", "fingerprint_only", "version", "ignore_keys", "ignore_files")
    APP_FIELD_NUMBER: _ClassVar[int]
    PROCESS_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_ONLY_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    IGNORE_KEYS_FIELD_NUMBER: _ClassVar[int]
    IGNORE_FILES_FIELD_NUMBER: _ClassVar[int]
    app: str
    process: ProcessIdentity
    sources: _containers.RepeatedCompositeFieldContainer[TraceSource]
    fingerprint: str
    fingerprint_only: bool
    version: str
    ignore_keys: _containers.RepeatedScalarFieldContainer[str]
    ignore_files: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, app: _Optional[str] = ..., process: _Optional[_Union[ProcessIdentity, _Mapping]] = ..., sources: _Optional[_Iterable[_Union[TraceSource, _Mapping]]] = ..., fingerprint: _Optional[str] = ..., fingerprint_only: bool = ..., version: _Optional[str] = ..., ignore_keys: _Optional[_Iterable[str]] = ..., ignore_files: _Optional[_Iterable[str]] = ...) -> None: ...

class RegisterResponse(_message.Message):
    __slots__ = ("kept", "added", "removed", "need_sources")
    KEPT_FIELD_NUMBER: _ClassVar[int]
    ADDED_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    NEED_SOURCES_FIELD_NUMBER: _ClassVar[int]
    kept: int
    added: int
    removed: int
    need_sources: bool
    def __init__(self, kept: _Optional[int] = ..., added: _Optional[int] = ..., removed: _Optional[int] = ..., need_sources: bool = ...) -> None: ...

class KeyDelta(_message.Message):
    __slots__ = ("key", "calls", "estimated", "lower_bound")
    KEY_FIELD_NUMBER: _ClassVar[int]
    CALLS_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_FIELD_NUMBER: _ClassVar[int]
    LOWER_BOUND_FIELD_NUMBER: _ClassVar[int]
    key: str
    calls: int
    estimated: bool
    lower_bound: bool
    def __init__(self, key: _Optional[str] = ..., calls: _Optional[int] = ..., estimated: bool = ..., lower_bound: bool = ...) -> None: ...

class ReportRequest(_message.Message):
    __slots__ = ("app", "instance_id", "sequence", "window_start_ms", "window_end_ms", "deltas", "dropped_updates", "fingerprint")
    APP_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    WINDOW_START_MS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_END_MS_FIELD_NUMBER: _ClassVar[int]
    DELTAS_FIELD_NUMBER: _ClassVar[int]
    DROPPED_UPDATES_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    app: str
    instance_id: str
    sequence: int
    window_start_ms: int
    window_end_ms: int
    deltas: _containers.RepeatedCompositeFieldContainer[KeyDelta]
    dropped_updates: int
    fingerprint: str
    def __init__(self, app: _Optional[str] = ..., instance_id: _Optional[str] = ..., sequence: _Optional[int] = ..., window_start_ms: _Optional[int] = ..., window_end_ms: _Optional[int] = ..., deltas: _Optional[_Iterable[_Union[KeyDelta, _Mapping]]] = ..., dropped_updates: _Optional[int] = ..., fingerprint: _Optional[str] = ...) -> None: ...

class ReportResponse(_message.Message):
    __slots__ = ("sequence", "duplicate", "unknown_keys")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_KEYS_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    duplicate: bool
    unknown_keys: int
    def __init__(self, sequence: _Optional[int] = ..., duplicate: bool = ..., unknown_keys: _Optional[int] = ...) -> None: ...

class FetchRequest(_message.Message):
    __slots__ = ("app", "quiet_days")
    APP_FIELD_NUMBER: _ClassVar[int]
    QUIET_DAYS_FIELD_NUMBER: _ClassVar[int]
    app: str
    quiet_days: int
    def __init__(self, app: _Optional[str] = ..., quiet_days: _Optional[int] = ...) -> None: ...

class HeatmapEntry(_message.Message):
    __slots__ = ("key", "calls", "estimated", "first_seen_ms", "last_seen_ms", "tracked_since_ms", "path", "lines", "lower_bound", "versions", "calls_7d", "calls_30d", "calls_90d", "days", "day_calls")
    KEY_FIELD_NUMBER: _ClassVar[int]
    CALLS_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEEN_MS_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_MS_FIELD_NUMBER: _ClassVar[int]
    TRACKED_SINCE_MS_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    LOWER_BOUND_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    CALLS_7D_FIELD_NUMBER: _ClassVar[int]
    CALLS_30D_FIELD_NUMBER: _ClassVar[int]
    CALLS_90D_FIELD_NUMBER: _ClassVar[int]
    DAYS_FIELD_NUMBER: _ClassVar[int]
    DAY_CALLS_FIELD_NUMBER: _ClassVar[int]
    key: str
    calls: int
    estimated: bool
    first_seen_ms: int
    last_seen_ms: int
    tracked_since_ms: int
    path: str
    lines: _containers.RepeatedScalarFieldContainer[int]
    lower_bound: bool
    versions: _containers.RepeatedScalarFieldContainer[int]
    calls_7d: int
    calls_30d: int
    calls_90d: int
    days: _containers.RepeatedScalarFieldContainer[int]
    day_calls: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, key: _Optional[str] = ..., calls: _Optional[int] = ..., estimated: bool = ..., first_seen_ms: _Optional[int] = ..., last_seen_ms: _Optional[int] = ..., tracked_since_ms: _Optional[int] = ..., path: _Optional[str] = ..., lines: _Optional[_Iterable[int]] = ..., lower_bound: bool = ..., versions: _Optional[_Iterable[int]] = ..., calls_7d: _Optional[int] = ..., calls_30d: _Optional[int] = ..., calls_90d: _Optional[int] = ..., days: _Optional[_Iterable[int]] = ..., day_calls: _Optional[_Iterable[int]] = ...) -> None: ...

class Version(_message.Message):
    __slots__ = ("fingerprint", "label", "first_seen_ms", "last_seen_ms", "keys")
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEEN_MS_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_MS_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    fingerprint: str
    label: str
    first_seen_ms: int
    last_seen_ms: int
    keys: int
    def __init__(self, fingerprint: _Optional[str] = ..., label: _Optional[str] = ..., first_seen_ms: _Optional[int] = ..., last_seen_ms: _Optional[int] = ..., keys: _Optional[int] = ...) -> None: ...

class FetchResponse(_message.Message):
    __slots__ = ("app", "entries", "registered_ms", "dropped_unknown", "dropped_updates", "versions", "now_ms", "retire_after_ms")
    APP_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_MS_FIELD_NUMBER: _ClassVar[int]
    DROPPED_UNKNOWN_FIELD_NUMBER: _ClassVar[int]
    DROPPED_UPDATES_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    NOW_MS_FIELD_NUMBER: _ClassVar[int]
    RETIRE_AFTER_MS_FIELD_NUMBER: _ClassVar[int]
    app: str
    entries: _containers.RepeatedCompositeFieldContainer[HeatmapEntry]
    registered_ms: int
    dropped_unknown: int
    dropped_updates: int
    versions: _containers.RepeatedCompositeFieldContainer[Version]
    now_ms: int
    retire_after_ms: int
    def __init__(self, app: _Optional[str] = ..., entries: _Optional[_Iterable[_Union[HeatmapEntry, _Mapping]]] = ..., registered_ms: _Optional[int] = ..., dropped_unknown: _Optional[int] = ..., dropped_updates: _Optional[int] = ..., versions: _Optional[_Iterable[_Union[Version, _Mapping]]] = ..., now_ms: _Optional[int] = ..., retire_after_ms: _Optional[int] = ...) -> None: ...

class ListAppsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class AppSummary(_message.Message):
    __slots__ = ("app", "keys", "cold_keys", "calls", "updated_ms")
    APP_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    COLD_KEYS_FIELD_NUMBER: _ClassVar[int]
    CALLS_FIELD_NUMBER: _ClassVar[int]
    UPDATED_MS_FIELD_NUMBER: _ClassVar[int]
    app: str
    keys: int
    cold_keys: int
    calls: int
    updated_ms: int
    def __init__(self, app: _Optional[str] = ..., keys: _Optional[int] = ..., cold_keys: _Optional[int] = ..., calls: _Optional[int] = ..., updated_ms: _Optional[int] = ...) -> None: ...

class ListAppsResponse(_message.Message):
    __slots__ = ("apps", "next_page_token", "total_apps")
    APPS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_APPS_FIELD_NUMBER: _ClassVar[int]
    apps: _containers.RepeatedCompositeFieldContainer[AppSummary]
    next_page_token: str
    total_apps: int
    def __init__(self, apps: _Optional[_Iterable[_Union[AppSummary, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., total_apps: _Optional[int] = ...) -> None: ...

class ResetRequest(_message.Message):
    __slots__ = ("app",)
    APP_FIELD_NUMBER: _ClassVar[int]
    app: str
    def __init__(self, app: _Optional[str] = ...) -> None: ...

class ResetResponse(_message.Message):
    __slots__ = ("keys",)
    KEYS_FIELD_NUMBER: _ClassVar[int]
    keys: int
    def __init__(self, keys: _Optional[int] = ...) -> None: ...

class DeleteAppRequest(_message.Message):
    __slots__ = ("app",)
    APP_FIELD_NUMBER: _ClassVar[int]
    app: str
    def __init__(self, app: _Optional[str] = ...) -> None: ...

class DeleteAppResponse(_message.Message):
    __slots__ = ("keys",)
    KEYS_FIELD_NUMBER: _ClassVar[int]
    keys: int
    def __init__(self, keys: _Optional[int] = ...) -> None: ...

class InfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class InfoResponse(_message.Message):
    __slots__ = ("version", "web_url", "store", "durability", "max_apps", "max_keys_per_app", "refused_credentials", "refused_tls")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    WEB_URL_FIELD_NUMBER: _ClassVar[int]
    STORE_FIELD_NUMBER: _ClassVar[int]
    DURABILITY_FIELD_NUMBER: _ClassVar[int]
    MAX_APPS_FIELD_NUMBER: _ClassVar[int]
    MAX_KEYS_PER_APP_FIELD_NUMBER: _ClassVar[int]
    REFUSED_CREDENTIALS_FIELD_NUMBER: _ClassVar[int]
    REFUSED_TLS_FIELD_NUMBER: _ClassVar[int]
    version: str
    web_url: str
    store: str
    durability: str
    max_apps: int
    max_keys_per_app: int
    refused_credentials: int
    refused_tls: int
    def __init__(self, version: _Optional[str] = ..., web_url: _Optional[str] = ..., store: _Optional[str] = ..., durability: _Optional[str] = ..., max_apps: _Optional[int] = ..., max_keys_per_app: _Optional[int] = ..., refused_credentials: _Optional[int] = ..., refused_tls: _Optional[int] = ...) -> None: ...

class CliHello(_message.Message):
    __slots__ = ("connect_key", "app", "root", "hostname")
    CONNECT_KEY_FIELD_NUMBER: _ClassVar[int]
    APP_FIELD_NUMBER: _ClassVar[int]
    ROOT_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    connect_key: str
    app: str
    root: str
    hostname: str
    def __init__(self, connect_key: _Optional[str] = ..., app: _Optional[str] = ..., root: _Optional[str] = ..., hostname: _Optional[str] = ...) -> None: ...

class LocalSource(_message.Message):
    __slots__ = ("key", "path", "line", "ignored")
    KEY_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    LINE_FIELD_NUMBER: _ClassVar[int]
    IGNORED_FIELD_NUMBER: _ClassVar[int]
    key: str
    path: str
    line: int
    ignored: bool
    def __init__(self, key: _Optional[str] = ..., path: _Optional[str] = ..., line: _Optional[int] = ..., ignored: bool = ...) -> None: ...

class LocalSources(_message.Message):
    __slots__ = ("sources",)
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    sources: _containers.RepeatedCompositeFieldContainer[LocalSource]
    def __init__(self, sources: _Optional[_Iterable[_Union[LocalSource, _Mapping]]] = ...) -> None: ...

class ReferenceCount(_message.Message):
    __slots__ = ("key", "references", "safe", "verdict", "reasons")
    KEY_FIELD_NUMBER: _ClassVar[int]
    REFERENCES_FIELD_NUMBER: _ClassVar[int]
    SAFE_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    key: str
    references: int
    safe: bool
    verdict: str
    reasons: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, key: _Optional[str] = ..., references: _Optional[int] = ..., safe: bool = ..., verdict: _Optional[str] = ..., reasons: _Optional[_Iterable[str]] = ...) -> None: ...

class CommandResult(_message.Message):
    __slots__ = ("command_id", "ok", "message", "diff", "safe", "reasons", "verdict")
    COMMAND_ID_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    DIFF_FIELD_NUMBER: _ClassVar[int]
    SAFE_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    command_id: str
    ok: bool
    message: str
    diff: str
    safe: bool
    reasons: _containers.RepeatedScalarFieldContainer[str]
    verdict: str
    def __init__(self, command_id: _Optional[str] = ..., ok: bool = ..., message: _Optional[str] = ..., diff: _Optional[str] = ..., safe: bool = ..., reasons: _Optional[_Iterable[str]] = ..., verdict: _Optional[str] = ...) -> None: ...

class CliEvent(_message.Message):
    __slots__ = ("hello", "sources", "references", "result")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    REFERENCES_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    hello: CliHello
    sources: LocalSources
    references: ReferenceCount
    result: CommandResult
    def __init__(self, hello: _Optional[_Union[CliHello, _Mapping]] = ..., sources: _Optional[_Union[LocalSources, _Mapping]] = ..., references: _Optional[_Union[ReferenceCount, _Mapping]] = ..., result: _Optional[_Union[CommandResult, _Mapping]] = ...) -> None: ...

class UiCommand(_message.Message):
    __slots__ = ("command_id", "ignore", "plan_removal", "apply_removal", "open")
    COMMAND_ID_FIELD_NUMBER: _ClassVar[int]
    IGNORE_FIELD_NUMBER: _ClassVar[int]
    PLAN_REMOVAL_FIELD_NUMBER: _ClassVar[int]
    APPLY_REMOVAL_FIELD_NUMBER: _ClassVar[int]
    OPEN_FIELD_NUMBER: _ClassVar[int]
    command_id: str
    ignore: str
    plan_removal: str
    apply_removal: str
    open: str
    def __init__(self, command_id: _Optional[str] = ..., ignore: _Optional[str] = ..., plan_removal: _Optional[str] = ..., apply_removal: _Optional[str] = ..., open: _Optional[str] = ...) -> None: ...
