//! The ledger's schema: every migration since the first, applied in order by
//! [`super::Ledger::open`] (`PRAGMA user_version` counts them).

/// The schema, one migration per version (PRAGMA user_version). Never edit a published step:
/// add one.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1
    "CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        started_ms INTEGER NOT NULL,
        ended_ms INTEGER,
        cwd TEXT NOT NULL DEFAULT '',
        class TEXT NOT NULL,
        print_mode INTEGER NOT NULL DEFAULT 0,
        model TEXT,
        reason TEXT,
        billing_mode TEXT NOT NULL,
        meter TEXT NOT NULL,
        ceiling_nanos INTEGER,
        overage INTEGER NOT NULL DEFAULT 0,
        cost_nanos INTEGER NOT NULL DEFAULT 0,
        end_kind TEXT,
        exit_code INTEGER,
        thresholds TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE usage (
        key TEXT PRIMARY KEY,
        session_id TEXT NOT NULL,
        ts_ms INTEGER NOT NULL,
        model TEXT NOT NULL,
        agent_id TEXT,
        input INTEGER NOT NULL,
        output INTEGER NOT NULL,
        cache_write_5m INTEGER NOT NULL,
        cache_write_1h INTEGER NOT NULL,
        cache_read INTEGER NOT NULL,
        web_search INTEGER NOT NULL,
        cost_nanos INTEGER NOT NULL,
        source TEXT NOT NULL
    );
    CREATE INDEX usage_ts ON usage(ts_ms);
    CREATE INDEX usage_session ON usage(session_id);
    CREATE TABLE alerts (
        kind TEXT NOT NULL,
        scope TEXT NOT NULL,
        threshold INTEGER NOT NULL,
        fired_ms INTEGER NOT NULL,
        PRIMARY KEY (kind, scope, threshold)
    );",
    // 2: the report cache (scan.rs): what was read of each transcript file, and its partial sums.
    // Only a cache: deleting these rows costs one slow report, nothing else.
    "CREATE TABLE scan_files (
        path BLOB PRIMARY KEY,
        dev INTEGER NOT NULL,
        ino INTEGER NOT NULL,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        offset INTEGER NOT NULL,
        head INTEGER NOT NULL,
        tail INTEGER NOT NULL,
        uses_mtime INTEGER NOT NULL,
        sums BLOB NOT NULL
    );
    CREATE TABLE scan_keys (
        path BLOB PRIMARY KEY,
        keys BLOB NOT NULL,
        lost BLOB NOT NULL
    );
    CREATE TABLE scan_meta (
        k TEXT PRIMARY KEY,
        v INTEGER NOT NULL
    );
    CREATE TABLE scan_dirs (
        path BLOB PRIMARY KEY,
        mtime_ns INTEGER NOT NULL,
        listed_ns INTEGER NOT NULL,
        entries BLOB NOT NULL
    );",
    // 3: who priced each response, and whether its figure is an estimate. Rows written before
    // this step were priced from ccb's table of the day: `table`.
    "ALTER TABLE usage ADD COLUMN priced_by TEXT NOT NULL DEFAULT 'table';
    ALTER TABLE usage ADD COLUMN estimated INTEGER NOT NULL DEFAULT 0;",
    // 4: runs. A session resumed is one session with one run per ccb invocation; its spend and
    // its ceiling are the session's. Rows written before this step have no run.
    "CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        session_id TEXT NOT NULL,
        started_ms INTEGER NOT NULL,
        ended_ms INTEGER,
        pid INTEGER,
        resumed INTEGER NOT NULL DEFAULT 0,
        end_kind TEXT,
        exit_code INTEGER,
        cost_nanos INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX runs_session ON runs(session_id);
    ALTER TABLE usage ADD COLUMN run_id TEXT;",
    // 5: spend limits across sessions (ledger/limits.rs): the holds of calls in flight, and spend
    // per 15-minute UTC slot, session and model, kept exact by triggers on usage.
    super::limits::MIGRATION,
    // 6: who and where (the team ledger, reports by user and host), the branch and commit a
    // session started on (reports by branch), and the model claude asked for when routing served
    // another (`model` stays the one served and priced). NULL in rows written before this step.
    "ALTER TABLE sessions ADD COLUMN branch TEXT;
    ALTER TABLE sessions ADD COLUMN commit_sha TEXT;
    ALTER TABLE sessions ADD COLUMN user_name TEXT;
    ALTER TABLE sessions ADD COLUMN host TEXT;
    ALTER TABLE usage ADD COLUMN requested_model TEXT;",
    // 7: the team ledger's outbox (outbox.rs): keys of rows not yet delivered to the server,
    // queued by triggers that exist only while a team ledger is configured; and how far each
    // transcript was read for `share_unmetered` (scan/share.rs).
    "CREATE TABLE sync_outbox (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL,
        key TEXT NOT NULL
    );
    CREATE TABLE sync_files (
        path BLOB PRIMARY KEY,
        dev INTEGER NOT NULL,
        ino INTEGER NOT NULL,
        offset INTEGER NOT NULL
    );",
];
