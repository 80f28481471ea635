//! The team ledger on PostgreSQL: connecting (TLS as the URL's `sslmode` asks, the password from
//! the URL, `PGPASSWORD` or `~/.pgpass`), its versioned schema (migrated under an advisory lock),
//! delivering this machine's rows exactly once (upserts by the same keys as the local ledger), and
//! reading everyone's usage back for team reports, pools and limits.
//!
//! Every table is prefixed `ccb_`, so the ledger can live in a database that holds other things.
//! Nothing here is on a session's launch path: the sync daemon, team reports and team admission
//! call it, each with a bounded wait.

use crate::core::team::{LedgerUrl, SslMode};
use postgres::{Client, Config, NoTls};
use std::sync::Arc;
use std::time::Duration;

/// The schema this ccb writes and reads, one step per version (`ccb_schema.version`). Never
/// edit a published step: add one.
const MIGRATIONS: &[&str] = &[
    // 1
    "CREATE TABLE ccb_sessions (
        id TEXT PRIMARY KEY,
        user_name TEXT NOT NULL,
        host TEXT NOT NULL,
        project TEXT NOT NULL,
        started_ms BIGINT NOT NULL,
        ended_ms BIGINT,
        class TEXT NOT NULL,
        print_mode BOOLEAN NOT NULL,
        model TEXT,
        reason TEXT,
        billing_mode TEXT NOT NULL,
        meter TEXT NOT NULL,
        ceiling_nanos BIGINT,
        overage BOOLEAN NOT NULL,
        end_kind TEXT,
        exit_code INTEGER,
        branch TEXT,
        commit_sha TEXT,
        via_ccb BOOLEAN NOT NULL
    );
    CREATE TABLE ccb_usage (
        key TEXT PRIMARY KEY,
        session_id TEXT NOT NULL,
        user_name TEXT NOT NULL,
        host TEXT NOT NULL,
        ts_ms BIGINT NOT NULL,
        model TEXT NOT NULL,
        requested_model TEXT,
        agent_id TEXT,
        input BIGINT NOT NULL,
        output BIGINT NOT NULL,
        cache_write_5m BIGINT NOT NULL,
        cache_write_1h BIGINT NOT NULL,
        cache_read BIGINT NOT NULL,
        web_search BIGINT NOT NULL,
        cost_nanos BIGINT NOT NULL,
        source TEXT NOT NULL,
        priced_by TEXT NOT NULL,
        estimated BOOLEAN NOT NULL,
        via_ccb BOOLEAN NOT NULL
    );
    CREATE INDEX ccb_usage_ts ON ccb_usage (ts_ms);
    CREATE INDEX ccb_usage_user_ts ON ccb_usage (user_name, ts_ms);
    CREATE TABLE ccb_seats (
        user_name TEXT PRIMARY KEY,
        plan TEXT NOT NULL,
        amount_nanos BIGINT NOT NULL,
        billing_day INTEGER NOT NULL,
        overage TEXT NOT NULL,
        include_unmetered BOOLEAN NOT NULL,
        updated_ms BIGINT NOT NULL
    );
    CREATE TABLE ccb_limits (
        scope TEXT NOT NULL,
        user_name TEXT NOT NULL DEFAULT '',
        period TEXT NOT NULL,
        amount_nanos BIGINT NOT NULL,
        set_by TEXT NOT NULL,
        set_ms BIGINT NOT NULL,
        PRIMARY KEY (scope, user_name, period)
    );
    CREATE TABLE ccb_holds (
        id TEXT PRIMARY KEY,
        user_name TEXT NOT NULL,
        host TEXT NOT NULL,
        session_id TEXT NOT NULL,
        nanos BIGINT NOT NULL,
        expires_ms BIGINT NOT NULL
    );",
    // 2: spend per user and 15-minute slot, kept exact by a trigger on ccb_usage, so that a
    // call's admission sums a day's 96 slots per user instead of every response of the period
    // (54 ms median over 100,000 responses before this step; benches/team.rs).
    "CREATE TABLE ccb_spend (
        user_name TEXT NOT NULL,
        slot_ms BIGINT NOT NULL,
        cost_nanos BIGINT NOT NULL,
        PRIMARY KEY (user_name, slot_ms)
    );
    CREATE INDEX ccb_spend_slot ON ccb_spend (slot_ms);
    CREATE FUNCTION ccb_spend_track() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'UPDATE' THEN
            UPDATE ccb_spend SET cost_nanos = cost_nanos - OLD.cost_nanos
             WHERE user_name = OLD.user_name AND slot_ms = (OLD.ts_ms / 900000) * 900000;
        END IF;
        INSERT INTO ccb_spend (user_name, slot_ms, cost_nanos)
             VALUES (NEW.user_name, (NEW.ts_ms / 900000) * 900000, NEW.cost_nanos)
        ON CONFLICT (user_name, slot_ms) DO UPDATE SET cost_nanos = ccb_spend.cost_nanos + EXCLUDED.cost_nanos;
        RETURN NULL;
    END $$;
    CREATE TRIGGER ccb_usage_spend AFTER INSERT OR UPDATE OF cost_nanos, ts_ms, user_name ON ccb_usage
        FOR EACH ROW EXECUTE FUNCTION ccb_spend_track();
    INSERT INTO ccb_spend (user_name, slot_ms, cost_nanos)
        SELECT user_name, (ts_ms / 900000) * 900000, SUM(cost_nanos) FROM ccb_usage GROUP BY 1, 2;",
    // 3: what team reports read: sums per 15-minute slot, session and model, kept by the same
    // trigger, so that `ccb usage --team` over a million responses reads a few thousand rows
    // (1.36 s before this step, a GROUP BY over every response; benches/team.rs). A response's
    // time, session and model never change on the server (deliveries update its figure only).
    "CREATE TABLE ccb_rollup (
        slot_ms BIGINT NOT NULL,
        session_id TEXT NOT NULL,
        model TEXT NOT NULL,
        input BIGINT NOT NULL,
        output BIGINT NOT NULL,
        cache_write_5m BIGINT NOT NULL,
        cache_write_1h BIGINT NOT NULL,
        cache_read BIGINT NOT NULL,
        web_search BIGINT NOT NULL,
        cost_nanos BIGINT NOT NULL,
        responses BIGINT NOT NULL,
        first_ms BIGINT NOT NULL,
        last_ms BIGINT NOT NULL,
        PRIMARY KEY (slot_ms, session_id, model)
    );
    CREATE OR REPLACE FUNCTION ccb_spend_track() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'UPDATE' THEN
            UPDATE ccb_spend SET cost_nanos = cost_nanos - OLD.cost_nanos
             WHERE user_name = OLD.user_name AND slot_ms = (OLD.ts_ms / 900000) * 900000;
            UPDATE ccb_rollup SET cost_nanos = cost_nanos - OLD.cost_nanos + NEW.cost_nanos
             WHERE slot_ms = (OLD.ts_ms / 900000) * 900000 AND session_id = OLD.session_id AND model = OLD.model;
        ELSE
            INSERT INTO ccb_rollup VALUES ((NEW.ts_ms / 900000) * 900000, NEW.session_id, NEW.model, NEW.input, NEW.output,
                    NEW.cache_write_5m, NEW.cache_write_1h, NEW.cache_read, NEW.web_search, NEW.cost_nanos, 1, NEW.ts_ms, NEW.ts_ms)
            ON CONFLICT (slot_ms, session_id, model) DO UPDATE SET
                input = ccb_rollup.input + EXCLUDED.input, output = ccb_rollup.output + EXCLUDED.output,
                cache_write_5m = ccb_rollup.cache_write_5m + EXCLUDED.cache_write_5m,
                cache_write_1h = ccb_rollup.cache_write_1h + EXCLUDED.cache_write_1h,
                cache_read = ccb_rollup.cache_read + EXCLUDED.cache_read, web_search = ccb_rollup.web_search + EXCLUDED.web_search,
                cost_nanos = ccb_rollup.cost_nanos + EXCLUDED.cost_nanos, responses = ccb_rollup.responses + 1,
                first_ms = LEAST(ccb_rollup.first_ms, EXCLUDED.first_ms), last_ms = GREATEST(ccb_rollup.last_ms, EXCLUDED.last_ms);
        END IF;
        INSERT INTO ccb_spend (user_name, slot_ms, cost_nanos)
             VALUES (NEW.user_name, (NEW.ts_ms / 900000) * 900000, NEW.cost_nanos)
        ON CONFLICT (user_name, slot_ms) DO UPDATE SET cost_nanos = ccb_spend.cost_nanos + EXCLUDED.cost_nanos;
        RETURN NULL;
    END $$;
    INSERT INTO ccb_rollup
        SELECT (ts_ms / 900000) * 900000, session_id, model, SUM(input), SUM(output), SUM(cache_write_5m), SUM(cache_write_1h),
               SUM(cache_read), SUM(web_search), SUM(cost_nanos), COUNT(*), MIN(ts_ms), MAX(ts_ms)
        FROM ccb_usage GROUP BY 1, 2, 3;",
];

/// The schema version this ccb knows.
pub const SCHEMA: i64 = MIGRATIONS.len() as i64;

/// `pg_advisory_lock` key for migrations: "ccb-ledger" in ASCII, folded into an i64.
const MIGRATION_LOCK: i64 = 0x6363_622d_6c65_6467;

/// What went wrong with the team ledger, in words a user can act on. None of these holds the
/// password; the URL is shown as [`LedgerUrl`]'s `Display` (password `…`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// No answer: refused, timed out, no route, DNS.
    Unreachable(String),
    /// The server refused who we are (password, pg_hba).
    Auth(String),
    /// The server's schema is older than this ccb's and this role cannot migrate it, or it is
    /// newer than this ccb knows.
    Schema(String),
    /// Anything else the server said.
    Server(String),
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Unreachable(s) | Problem::Auth(s) | Problem::Schema(s) | Problem::Server(s) => f.write_str(s),
        }
    }
}

/// The bound on reaching the server when the URL names none: a session's sync daemon retries,
/// a report gives up with a message.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The password for `url`: its own, else `PGPASSWORD`, else the first matching line of
/// `PGPASSFILE` or `~/.pgpass` (ignored, as libpq does, when others can read it).
fn password(url: &LedgerUrl, user: &str, db: &str) -> Option<String> {
    if let Some(p) = url.password() {
        return Some(p.to_string());
    }
    if let Some(p) = std::env::var("PGPASSWORD").ok().filter(|p| !p.is_empty()) {
        return Some(p);
    }
    let file = std::env::var_os("PGPASSFILE")
        .filter(|f| !f.is_empty())
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".pgpass")))?;
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(&file).ok()?;
    if meta.permissions().mode() & 0o077 != 0 {
        log::warn!("{}: readable by others; ignored (chmod 600 it)", file.display());
        return None;
    }
    let text = std::fs::read_to_string(&file).ok()?;
    crate::core::team::pgpass_lookup(&text, url.pgpass_host(), url.port_or_default(), db, user)
}

/// Connect, within `timeout` (or the URL's `connect_timeout` when shorter). `user` is the role
/// when the URL names none.
pub fn connect(url: &LedgerUrl, timeout: Duration) -> Result<Client, Problem> {
    let user = url.user.clone().unwrap_or_else(crate::sys::whoami::login_name);
    let db = url.dbname.clone().unwrap_or_else(|| user.clone());
    let mut c = Config::new();
    c.user(&user).dbname(&db).application_name(url.application_name.as_deref().unwrap_or("ccb"));
    match url.host.as_deref() {
        Some(h) if h.starts_with('/') => {
            c.host_path(h);
        }
        Some(h) => {
            c.host(h);
        }
        None => {
            c.host_path("/var/run/postgresql").host("localhost");
        }
    }
    c.port(url.port_or_default());
    let t = url.connect_timeout.map(|s| Duration::from_secs(s.into())).map_or(timeout, |u| u.min(timeout));
    c.connect_timeout(t);
    c.tcp_user_timeout(t.max(Duration::from_secs(1)));
    c.keepalives(true).keepalives_idle(Duration::from_secs(30));
    if let Some(p) = password(url, &user, &db) {
        c.password(p);
    }
    let shown = url.to_string();
    let result = match url.sslmode {
        SslMode::Disable => {
            c.ssl_mode(postgres::config::SslMode::Disable);
            c.connect(NoTls)
        }
        mode => {
            c.ssl_mode(if mode == SslMode::Prefer {
                postgres::config::SslMode::Prefer
            } else {
                postgres::config::SslMode::Require
            });
            let tls = tls_config(url).map_err(|why| Problem::Server(format!("team ledger {shown}: {why}")))?;
            c.connect(tokio_postgres_rustls::MakeRustlsConnect::new(tls))
        }
    };
    result.map_err(|e| classify(&e, &shown, &user, &db))
}

/// A connection error, told plainly.
fn classify(e: &postgres::Error, shown: &str, user: &str, db: &str) -> Problem {
    if let Some(db_err) = e.as_db_error() {
        let code = db_err.code().code();
        return match code {
            "28P01" | "28000" => Problem::Auth(format!(
                "the team ledger {shown} refused role '{user}' ({}): set its password in the URL, PGPASSWORD or ~/.pgpass",
                db_err.message()
            )),
            "3D000" => Problem::Server(format!(
                "the team ledger {shown} has no database '{db}': create it (createdb {db}) or name another in the URL"
            )),
            _ => Problem::Server(format!("the team ledger {shown} said: {} ({code})", db_err.message())),
        };
    }
    let text = e.to_string();
    let why = std::error::Error::source(e).map(|s| s.to_string()).unwrap_or(text);
    Problem::Unreachable(format!("cannot reach the team ledger {shown}: {why}"))
}

/// The TLS settings for a mode: `prefer` and `require` encrypt without checking (libpq's
/// meaning), `verify-ca` checks the chain, `verify-full` the chain and the name.
fn tls_config(url: &LedgerUrl) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let verifier: Arc<dyn rustls::client::danger::ServerCertVerifier> = match url.sslmode {
        SslMode::Prefer | SslMode::Require | SslMode::Disable => Arc::new(NoCheck(provider.clone())),
        SslMode::VerifyCa | SslMode::VerifyFull => {
            let mut roots = rustls::RootCertStore::empty();
            match &url.sslrootcert {
                Some(f) => {
                    use rustls_pki_types::pem::PemObject;
                    let certs = rustls_pki_types::CertificateDer::pem_file_iter(f)
                        .map_err(|e| format!("cannot read sslrootcert {f}: {e}"))?;
                    for c in certs {
                        let c = c.map_err(|e| format!("sslrootcert {f}: {e}"))?;
                        roots.add(c).map_err(|e| format!("sslrootcert {f}: {e}"))?;
                    }
                }
                None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
            }
            let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| e.to_string())?;
            if url.sslmode == SslMode::VerifyCa {
                Arc::new(AnyName(webpki))
            } else {
                webpki
            }
        }
    };
    Ok(builder.dangerous().with_custom_certificate_verifier(verifier).with_no_client_auth())
}

/// `prefer` / `require`: encrypted, the certificate not checked (what libpq does without a root
/// certificate). Signatures are still checked: the session is with the holder of the key.
#[derive(Debug)]
struct NoCheck(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoCheck {
    fn verify_server_cert(
        &self,
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &[rustls_pki_types::CertificateDer<'_>],
        _: &rustls_pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the chain checked, the name not.
#[derive(Debug)]
struct AnyName(Arc<rustls::client::WebPkiServerVerifier>);

impl rustls::client::danger::ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end: &rustls_pki_types::CertificateDer<'_>,
        inter: &[rustls_pki_types::CertificateDer<'_>],
        name: &rustls_pki_types::ServerName<'_>,
        ocsp: &[u8],
        now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        use rustls::{CertificateError, Error};
        match self.0.verify_server_cert(end, inter, name, ocsp, now) {
            Err(Error::InvalidCertificate(CertificateError::NotValidForName))
            | Err(Error::InvalidCertificate(CertificateError::NotValidForNameContext { .. })) => {
                Ok(rustls::client::danger::ServerCertVerified::assertion())
            }
            other => other,
        }
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &rustls_pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(m, c, d)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &rustls_pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(m, c, d)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// The server's schema version; 0 when it has none yet.
pub fn schema_version(c: &mut Client) -> Result<i64, postgres::Error> {
    let has = c.query_one("SELECT to_regclass('ccb_schema') IS NOT NULL", &[])?.get::<_, bool>(0);
    if !has {
        return Ok(0);
    }
    Ok(c.query_opt("SELECT version FROM ccb_schema", &[])?.map_or(0, |r| r.get::<_, i32>(0) as i64))
}

/// What [`migrate`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migrated {
    pub from: i64,
    pub to: i64,
}

/// Bring the server's schema to this ccb's, under `pg_advisory_lock` (two machines migrating at
/// once: one waits, then finds nothing to do). A server on a newer schema is left alone: this ccb
/// keeps recording locally and says to upgrade.
pub fn migrate(c: &mut Client, shown: &str) -> Result<Migrated, Problem> {
    let server = |e: postgres::Error| -> Problem {
        if let Some(d) = e.as_db_error() {
            if d.code().code() == "42501" {
                return Problem::Schema(format!(
                    "the team ledger {shown}: this role may not create ccb's tables ({}); have the database owner run `ccb ledger migrate`, or GRANT CREATE ON SCHEMA public TO this role",
                    d.message()
                ));
            }
            return Problem::Server(format!("the team ledger {shown} said: {} ({})", d.message(), d.code().code()));
        }
        Problem::Unreachable(format!("lost the team ledger {shown}: {e}"))
    };
    let from = schema_version(c).map_err(server)?;
    if from == SCHEMA {
        return Ok(Migrated { from, to: from });
    }
    if from > SCHEMA {
        return Err(newer(shown, from));
    }
    c.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK]).map_err(server)?;
    let result = (|| {
        let mut tx = c.transaction()?;
        tx.batch_execute("CREATE TABLE IF NOT EXISTS ccb_schema (version INTEGER NOT NULL)")?;
        let now =
            tx.query_opt("SELECT version FROM ccb_schema FOR UPDATE", &[])?.map_or(0, |r| r.get::<_, i32>(0) as i64);
        if now >= SCHEMA {
            tx.commit()?;
            return Ok(now);
        }
        for step in &MIGRATIONS[now as usize..] {
            tx.batch_execute(step)?;
        }
        if now == 0 {
            tx.execute("INSERT INTO ccb_schema (version) VALUES ($1)", &[&(SCHEMA as i32)])?;
        } else {
            tx.execute("UPDATE ccb_schema SET version = $1", &[&(SCHEMA as i32)])?;
        }
        tx.commit()?;
        Ok(now)
    })();
    let _ = c.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]);
    match result {
        Ok(now) if now > SCHEMA => Err(newer(shown, now)),
        Ok(_) => Ok(Migrated { from, to: SCHEMA }),
        Err(e) => Err(server(e)),
    }
}

fn newer(shown: &str, v: i64) -> Problem {
    Problem::Schema(format!(
        "the team ledger {shown} has schema version {v}, newer than this ccb's {SCHEMA}: upgrade ccb; until then sessions record on this machine only"
    ))
}

/// Check the server is on this ccb's schema, migrating it when it is older and this role may.
pub fn ready(c: &mut Client, shown: &str) -> Result<(), Problem> {
    migrate(c, shown).map(|_| ())
}

/// One session as the team ledger keeps it (the project's name only, never the path).
#[derive(Debug, Clone)]
pub struct TeamSession {
    pub id: String,
    pub user: String,
    pub host: String,
    pub project: String,
    pub started_ms: i64,
    pub ended_ms: Option<i64>,
    pub class: String,
    pub print_mode: bool,
    pub model: Option<String>,
    pub reason: Option<String>,
    pub billing_mode: String,
    pub meter: String,
    pub ceiling_nanos: Option<i64>,
    pub overage: bool,
    pub end_kind: Option<String>,
    pub exit_code: Option<i32>,
    pub branch: Option<String>,
    pub commit: Option<String>,
    pub via_ccb: bool,
}

impl TeamSession {
    /// A session known only by its responses (a transcript not run through ccb, or a response
    /// whose session has no row): who ran it, where, and nothing the ledger did not see.
    pub fn unrecorded(id: &str, user: &str, host: &str, project: String, class: String, via_ccb: bool) -> TeamSession {
        TeamSession {
            id: id.to_string(),
            user: user.to_string(),
            host: host.to_string(),
            project,
            started_ms: 0,
            ended_ms: None,
            class,
            print_mode: false,
            model: None,
            reason: None,
            billing_mode: "unknown".into(),
            meter: "unknown".into(),
            ceiling_nanos: None,
            overage: false,
            end_kind: None,
            exit_code: None,
            branch: None,
            commit: None,
            via_ccb,
        }
    }
}

/// A response's tokens in the team ledger's column order (input, output, cache writes 5 m and
/// 1 h, cache reads, web searches).
pub fn tokens_of(u: &crate::core::pricing::Usage) -> [i64; 6] {
    [u.input, u.output, u.cache_write_5m, u.cache_write_1h, u.cache_read, u.web_search]
        .map(|n| n.min(i64::MAX as u64) as i64)
}

/// One response as the team ledger keeps it.
#[derive(Debug, Clone)]
pub struct TeamUsage {
    pub key: String,
    pub session_id: String,
    pub user: String,
    pub host: String,
    pub ts_ms: i64,
    pub model: String,
    pub requested_model: Option<String>,
    pub agent_id: Option<String>,
    pub tokens: [i64; 6],
    pub cost_nanos: i64,
    pub source: String,
    pub priced_by: String,
    pub estimated: bool,
    pub via_ccb: bool,
}

/// A seat's credit pool, as its user configured it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seat {
    pub user: String,
    pub plan: String,
    pub amount_nanos: i64,
    pub billing_day: i32,
    pub overage: String,
    pub include_unmetered: bool,
}

/// Deliver sessions, responses and a seat in one transaction: each by its key, so a delivery
/// repeated (a retry after a lost answer, a second machine) changes nothing that was already
/// there but figures that were amended since (a response's cost, a session's end).
pub fn deliver(
    c: &mut Client,
    sessions: &[TeamSession],
    usage: &[TeamUsage],
    seat: Option<&Seat>,
) -> Result<(), postgres::Error> {
    let mut tx = c.transaction()?;
    write_rows(&mut tx, sessions, usage, seat)?;
    tx.commit()
}

fn write_rows(
    tx: &mut postgres::Transaction<'_>,
    sessions: &[TeamSession],
    usage: &[TeamUsage],
    seat: Option<&Seat>,
) -> Result<(), postgres::Error> {
    write_sessions(tx, sessions, false)?;
    write_usage_and_seat(tx, usage, seat)
}

/// Sessions by id: updated to what this machine knows (`only_if_absent`: a session's row as it
/// began, which never replaces one the sync delivered).
fn write_sessions(
    tx: &mut postgres::Transaction<'_>,
    sessions: &[TeamSession],
    only_if_absent: bool,
) -> Result<(), postgres::Error> {
    if only_if_absent {
        for s in sessions {
            tx.execute(
                "INSERT INTO ccb_sessions (id, user_name, host, project, started_ms, class, print_mode, model, reason,
                    billing_mode, meter, ceiling_nanos, overage, branch, commit_sha, via_ccb)
                 VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16) ON CONFLICT (id) DO NOTHING",
                &[
                    &s.id,
                    &s.user,
                    &s.host,
                    &s.project,
                    &s.started_ms,
                    &s.class,
                    &s.print_mode,
                    &s.model,
                    &s.reason,
                    &s.billing_mode,
                    &s.meter,
                    &s.ceiling_nanos,
                    &s.overage,
                    &s.branch,
                    &s.commit,
                    &s.via_ccb,
                ],
            )?;
        }
        return Ok(());
    }
    if !sessions.is_empty() {
        let st = tx.prepare(
            "INSERT INTO ccb_sessions (id, user_name, host, project, started_ms, ended_ms, class, print_mode, model, reason,
                billing_mode, meter, ceiling_nanos, overage, end_kind, exit_code, branch, commit_sha, via_ccb)
             VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19)
             ON CONFLICT (id) DO UPDATE SET ended_ms = EXCLUDED.ended_ms, class = EXCLUDED.class, model = EXCLUDED.model,
                reason = EXCLUDED.reason, billing_mode = EXCLUDED.billing_mode, meter = EXCLUDED.meter,
                ceiling_nanos = EXCLUDED.ceiling_nanos, overage = EXCLUDED.overage, end_kind = EXCLUDED.end_kind,
                exit_code = EXCLUDED.exit_code,
                branch = COALESCE(ccb_sessions.branch, EXCLUDED.branch), commit_sha = COALESCE(ccb_sessions.commit_sha, EXCLUDED.commit_sha),
                via_ccb = ccb_sessions.via_ccb OR EXCLUDED.via_ccb",
        )?;
        for s in sessions {
            tx.execute(
                &st,
                &[
                    &s.id,
                    &s.user,
                    &s.host,
                    &s.project,
                    &s.started_ms,
                    &s.ended_ms,
                    &s.class,
                    &s.print_mode,
                    &s.model,
                    &s.reason,
                    &s.billing_mode,
                    &s.meter,
                    &s.ceiling_nanos,
                    &s.overage,
                    &s.end_kind,
                    &s.exit_code,
                    &s.branch,
                    &s.commit,
                    &s.via_ccb,
                ],
            )?;
        }
    }
    Ok(())
}

fn write_usage_and_seat(
    tx: &mut postgres::Transaction<'_>,
    usage: &[TeamUsage],
    seat: Option<&Seat>,
) -> Result<(), postgres::Error> {
    if !usage.is_empty() {
        let st = tx.prepare(
            "INSERT INTO ccb_usage (key, session_id, user_name, host, ts_ms, model, requested_model, agent_id, input, output,
                cache_write_5m, cache_write_1h, cache_read, web_search, cost_nanos, source, priced_by, estimated, via_ccb)
             VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19)
             ON CONFLICT (key) DO UPDATE SET cost_nanos = EXCLUDED.cost_nanos, priced_by = EXCLUDED.priced_by,
                estimated = EXCLUDED.estimated
             WHERE EXCLUDED.via_ccb OR NOT ccb_usage.via_ccb",
        )?;
        for u in usage {
            let [i, o, w5, w1, r, ws] = u.tokens;
            tx.execute(
                &st,
                &[
                    &u.key,
                    &u.session_id,
                    &u.user,
                    &u.host,
                    &u.ts_ms,
                    &u.model,
                    &u.requested_model,
                    &u.agent_id,
                    &i,
                    &o,
                    &w5,
                    &w1,
                    &r,
                    &ws,
                    &u.cost_nanos,
                    &u.source,
                    &u.priced_by,
                    &u.estimated,
                    &u.via_ccb,
                ],
            )?;
        }
    }
    if let Some(s) = seat {
        tx.execute(
            "INSERT INTO ccb_seats (user_name, plan, amount_nanos, billing_day, overage, include_unmetered, updated_ms)
             VALUES ($1,$2,$3,$4,$5,$6,$7)
             ON CONFLICT (user_name) DO UPDATE SET plan = EXCLUDED.plan, amount_nanos = EXCLUDED.amount_nanos,
                billing_day = EXCLUDED.billing_day, overage = EXCLUDED.overage,
                include_unmetered = EXCLUDED.include_unmetered, updated_ms = EXCLUDED.updated_ms",
            &[
                &s.user,
                &s.plan,
                &s.amount_nanos,
                &s.billing_day,
                &s.overage,
                &s.include_unmetered,
                &crate::ledger::now_ms(),
            ],
        )?;
    }
    Ok(())
}

/// Responses of sessions not run through ccb (`share_unmetered`): their sessions are written
/// only where the server has none (a session ccb ran keeps its own row), and a response ccb
/// recorded is never replaced by a transcript's reading of it.
pub fn deliver_unmetered(c: &mut Client, sessions: &[TeamSession], usage: &[TeamUsage]) -> Result<(), postgres::Error> {
    let mut tx = c.transaction()?;
    write_sessions(&mut tx, sessions, true)?;
    write_usage_and_seat(&mut tx, usage, None)?;
    tx.commit()
}

/// Everyone's usage from `since_ms`'s quarter hour on, by 15-minute slot, session and model
/// (every time zone's day boundary is on a quarter hour), as the rollup keeps it: a million
/// responses come back as a few thousand rows. Each row: (slot start ms, session, model, tokens, cost, responses, first ms, last ms).
pub type SlotRow = (i64, String, String, [i64; 6], i64, i64, i64, i64);

pub fn usage_slots(c: &mut Client, since_ms: i64, until_ms: i64) -> Result<Vec<SlotRow>, postgres::Error> {
    let rows = c.query(
        "SELECT slot_ms, session_id, model, input, output, cache_write_5m, cache_write_1h, cache_read, web_search,
                cost_nanos, responses, first_ms, last_ms
         FROM ccb_rollup WHERE slot_ms >= $1 AND slot_ms < $2 AND responses > 0",
        &[&slot_floor(since_ms), &until_ms],
    )?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                r.get(0),
                r.get(1),
                r.get(2),
                [r.get(3), r.get(4), r.get(5), r.get(6), r.get(7), r.get(8)],
                r.get(9),
                r.get(10),
                r.get(11),
                r.get(12),
            )
        })
        .collect())
}

/// The sessions that have usage from `since_ms` on (or started since), with who and where.
pub fn sessions_since(c: &mut Client, since_ms: i64) -> Result<Vec<TeamSession>, postgres::Error> {
    let rows = c.query(
        "SELECT id, user_name, host, project, started_ms, ended_ms, class, print_mode, model, reason, billing_mode, meter,
                ceiling_nanos, overage, end_kind, exit_code, branch, commit_sha, via_ccb
         FROM ccb_sessions s
         WHERE s.started_ms >= $1 OR s.id IN (SELECT DISTINCT session_id FROM ccb_rollup WHERE slot_ms >= $2)",
        &[&since_ms, &slot_floor(since_ms)],
    )?;
    Ok(rows
        .iter()
        .map(|r| TeamSession {
            id: r.get(0),
            user: r.get(1),
            host: r.get(2),
            project: r.get(3),
            started_ms: r.get(4),
            ended_ms: r.get(5),
            class: r.get(6),
            print_mode: r.get(7),
            model: r.get(8),
            reason: r.get(9),
            billing_mode: r.get(10),
            meter: r.get(11),
            ceiling_nanos: r.get(12),
            overage: r.get(13),
            end_kind: r.get(14),
            exit_code: r.get(15),
            branch: r.get(16),
            commit: r.get(17),
            via_ccb: r.get(18),
        })
        .collect())
}

/// Every seat's pool settings.
pub fn seats(c: &mut Client) -> Result<Vec<Seat>, postgres::Error> {
    let rows = c.query(
        "SELECT user_name, plan, amount_nanos, billing_day, overage, include_unmetered FROM ccb_seats ORDER BY user_name",
        &[],
    )?;
    Ok(rows
        .iter()
        .map(|r| Seat {
            user: r.get(0),
            plan: r.get(1),
            amount_nanos: r.get(2),
            billing_day: r.get(3),
            overage: r.get(4),
            include_unmetered: r.get(5),
        })
        .collect())
}

/// What `user` spent on the credit pool (`meter = credit-pool`) with `from_ms <= ts < to_ms`; with
/// `unmetered`, responses of sessions not run through ccb that were programmatic count too.
pub fn pool_spend(
    c: &mut Client,
    user: &str,
    from_ms: i64,
    to_ms: i64,
    unmetered: bool,
) -> Result<i64, postgres::Error> {
    let r = c.query_one(
        "SELECT COALESCE(SUM(u.cost_nanos), 0)::BIGINT FROM ccb_usage u JOIN ccb_sessions s ON s.id = u.session_id
         WHERE u.user_name = $1 AND u.ts_ms >= $2 AND u.ts_ms < $3
           AND (s.meter = 'credit-pool' OR ($4 AND NOT s.via_ccb AND s.class = 'programmatic'))",
        &[&user, &from_ms, &to_ms, &unmetered],
    )?;
    Ok(r.get(0))
}

/// A team-wide (`user` None) or per-user limit set on the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeamLimit {
    pub user: Option<String>,
    pub period: String,
    pub amount_nanos: i64,
    pub set_by: String,
    pub set_ms: i64,
}

pub fn limits(c: &mut Client) -> Result<Vec<TeamLimit>, postgres::Error> {
    let rows = c.query(
        "SELECT scope, user_name, period, amount_nanos, set_by, set_ms FROM ccb_limits ORDER BY scope, user_name, period",
        &[],
    )?;
    Ok(rows
        .iter()
        .map(|r| {
            let scope: String = r.get(0);
            let user: String = r.get(1);
            TeamLimit {
                user: (scope == "user").then_some(user),
                period: r.get(2),
                amount_nanos: r.get(3),
                set_by: r.get(4),
                set_ms: r.get(5),
            }
        })
        .collect())
}

/// Set (or with `amount_nanos` None, remove) a limit on the server.
pub fn set_limit(
    c: &mut Client,
    user: Option<&str>,
    period: &str,
    amount_nanos: Option<i64>,
    set_by: &str,
) -> Result<u64, postgres::Error> {
    let scope = if user.is_some() { "user" } else { "team" };
    let u = user.unwrap_or("");
    match amount_nanos {
        Some(a) => c.execute(
            "INSERT INTO ccb_limits (scope, user_name, period, amount_nanos, set_by, set_ms) VALUES ($1,$2,$3,$4,$5,$6)
             ON CONFLICT (scope, user_name, period) DO UPDATE SET amount_nanos = EXCLUDED.amount_nanos,
                set_by = EXCLUDED.set_by, set_ms = EXCLUDED.set_ms",
            &[&scope, &u, &period, &a, &set_by, &crate::ledger::now_ms()],
        ),
        None => c.execute(
            "DELETE FROM ccb_limits WHERE scope = $1 AND user_name = $2 AND period = $3",
            &[&scope, &u, &period],
        ),
    }
}

/// The outcome of asking the team ledger to admit a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Held: the call may go; settle or release the hold by its id.
    Held,
    /// A limit would be passed: (the limit, spent, held by others, its amount).
    Refused { limit: TeamLimit, spent: i64, held: i64 },
}

/// Admit a call that may cost up to `nanos` against every team limit that covers `user`: under
/// a lock on those limits' rows (so two machines' admissions are serialized), sum what was spent
/// in each limit's period (from `period_start(period)`) and what others hold, and either refuse
/// or insert a hold, with the guarantee of `call.strict` as `core::limits::admit` has it. Holds expire (`expires_ms`) so a machine that dies cannot hold forever.
/// The 15-minute slot holding `ms` (every time zone's day, week and month starts on one).
fn slot_floor(ms: i64) -> i64 {
    ms.div_euclid(900_000) * 900_000
}

/// A call to admit: its hold's id, who and where, and what it may cost.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    pub hold_id: &'a str,
    pub user: &'a str,
    pub host: &'a str,
    pub session_id: &'a str,
    pub nanos: i64,
    pub now_ms: i64,
    /// The limits' guarantee: strict (spent + held + this call's `nanos` must fit) or crossing
    /// (admitted while spent + held is below the limit; the call may cross it).
    pub strict: bool,
}

pub fn admit(
    c: &mut Client,
    call: &Call<'_>,
    period_start: &dyn Fn(&str) -> Option<i64>,
) -> Result<Admission, postgres::Error> {
    let Call { hold_id, user, host, session_id, nanos, now_ms, strict } = *call;
    let mut tx = c.transaction()?;
    tx.execute("DELETE FROM ccb_holds WHERE expires_ms < $1", &[&now_ms])?;
    let rows = tx.query(
        "SELECT scope, user_name, period, amount_nanos, set_by, set_ms FROM ccb_limits
         WHERE scope = 'team' OR (scope = 'user' AND user_name = $1) ORDER BY scope, user_name, period FOR UPDATE",
        &[&user],
    )?;
    for r in &rows {
        let scope: String = r.get(0);
        let limit = TeamLimit {
            user: (scope == "user").then(|| r.get(1)),
            period: r.get(2),
            amount_nanos: r.get(3),
            set_by: r.get(4),
            set_ms: r.get(5),
        };
        let Some(from) = period_start(&limit.period) else { continue };
        let who: Option<&str> = limit.user.as_deref();
        let spent: i64 = tx
            .query_one(
                "SELECT COALESCE(SUM(cost_nanos), 0)::BIGINT FROM ccb_spend WHERE slot_ms >= $1 AND ($2::TEXT IS NULL OR user_name = $2)",
                &[&slot_floor(from), &who],
            )?
            .get(0);
        let held: i64 = tx
            .query_one(
                "SELECT COALESCE(SUM(nanos), 0)::BIGINT FROM ccb_holds WHERE ($1::TEXT IS NULL OR user_name = $1)",
                &[&who],
            )?
            .get(0);
        let used = spent.saturating_add(held);
        if used >= limit.amount_nanos || (strict && used.saturating_add(nanos) > limit.amount_nanos) {
            tx.rollback()?;
            return Ok(Admission::Refused { limit, spent, held });
        }
    }
    tx.execute(
        "INSERT INTO ccb_holds (id, user_name, host, session_id, nanos, expires_ms) VALUES ($1,$2,$3,$4,$5,$6)
         ON CONFLICT (id) DO NOTHING",
        &[&hold_id, &user, &host, &session_id, &nanos, &(now_ms + HOLD_TTL_MS)],
    )?;
    tx.commit()?;
    Ok(Admission::Held)
}

/// How long a hold lives when its call is never settled (its machine died): longer than any call.
pub const HOLD_TTL_MS: i64 = 30 * 60 * 1000;

/// A call is over: its hold goes, and its response (when it had one) is delivered in the same
/// transaction, so that the team ledger never counts it twice nor forgets it between the two.
pub fn settle(
    c: &mut Client,
    hold_id: &str,
    usage: Option<&TeamUsage>,
    session: Option<&TeamSession>,
) -> Result<(), postgres::Error> {
    let mut tx = c.transaction()?;
    tx.execute("DELETE FROM ccb_holds WHERE id = $1", &[&hold_id])?;
    if let Some(u) = usage {
        write_sessions(&mut tx, session.map(std::slice::from_ref).unwrap_or(&[]), true)?;
        write_usage_and_seat(&mut tx, std::slice::from_ref(u), None)?;
    }
    tx.commit()
}

/// What a team limit counts now: spent from `from_ms` on (everyone's, or `user`'s) and what live
/// holds reserve.
pub fn standing(c: &mut Client, user: Option<&str>, from_ms: i64, now_ms: i64) -> Result<(i64, i64), postgres::Error> {
    let spent: i64 = c
        .query_one(
            "SELECT COALESCE(SUM(cost_nanos), 0)::BIGINT FROM ccb_spend WHERE slot_ms >= $1 AND ($2::TEXT IS NULL OR user_name = $2)",
            &[&slot_floor(from_ms), &user],
        )?
        .get(0);
    let held: i64 = c
        .query_one(
            "SELECT COALESCE(SUM(nanos), 0)::BIGINT FROM ccb_holds WHERE expires_ms >= $1 AND ($2::TEXT IS NULL OR user_name = $2)",
            &[&now_ms, &user],
        )?
        .get(0);
    Ok((spent, held))
}
