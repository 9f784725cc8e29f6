//! The measurement store: runs and their records in SQLite (one machine) or PostgreSQL (a
//! fleet writing to one database), with versioned migrations, a per-host lock for cron, resume,
//! and the queries behind `history`, `diff` and `export`.
//!
//! The SQL is written once; [`Db`] hides the two drivers (rusqlite, postgres) behind execute /
//! query with a small value type, and `?` placeholders are rewritten to `$N` for PostgreSQL.

pub mod postgres;
pub mod query;
pub mod sqlite;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use anyhow::{Context as _, bail};

use crate::report::{COLUMNS, Record, RunMeta};

/// A value crossing the driver boundary.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Text(String),
}

impl Value {
    pub fn text(&self) -> Option<&str> {
        match self {
            Self::Text(s) => Some(s),
            _ => None,
        }
    }

    pub fn int(&self) -> Option<i64> {
        match self {
            Self::Int(i) => Some(*i),
            Self::Text(s) => s.parse().ok(),
            Self::Null => None,
        }
    }

    /// Text, or the empty string for NULL.
    pub fn str_or_empty(&self) -> String {
        match self {
            Self::Null => String::new(),
            Self::Int(i) => i.to_string(),
            Self::Text(s) => s.clone(),
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Self::Text(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Self::Text(s)
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Self::Int(i)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// The little a store needs from a database driver.
pub trait Db: Send {
    fn dialect(&self) -> Dialect;
    /// Runs statements without parameters (migrations, BEGIN/COMMIT).
    fn batch(&mut self, sql: &str) -> anyhow::Result<()>;
    fn execute(&mut self, sql: &str, params: &[Value]) -> anyhow::Result<u64>;
    fn query(&mut self, sql: &str, params: &[Value]) -> anyhow::Result<Vec<Vec<Value>>>;
    /// Takes the store's lock for `key` (this host's runs); `wait` blocks until it is free.
    /// Returns false when another holder has it and `wait` is false.
    /// Tries once to take the lock named `key`; false when another holds it.
    fn try_lock(&mut self, key: &str, holder: &str) -> anyhow::Result<bool>;
}

/// `?` placeholders to `$1, $2, …` (PostgreSQL); the SQL here has no `?` inside literals.
pub fn placeholders(sql: &str, dialect: Dialect) -> String {
    if dialect == Dialect::Sqlite {
        return sql.to_owned();
    }
    let mut out = String::with_capacity(sql.len() + 16);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(c);
        }
    }
    out
}

/// Report columns stored as their own SQL columns (all but `run_id`, which is the foreign key).
fn record_columns() -> impl Iterator<Item = &'static str> {
    COLUMNS.iter().copied().filter(|c| *c != "run_id")
}

/// What `--resume` continues.
pub struct Resumed {
    /// (target, resolver) pairs already recorded.
    pub done: HashSet<(String, String)>,
    pub started_at: String,
    pub network: RunNetwork,
}

/// The public address and ASN a run's records were measured from (empty when not asked).
#[derive(Clone, Debug, Default)]
pub struct RunNetwork {
    pub public_ip: Option<String>,
    pub asn: Option<u32>,
}

impl RunNetwork {
    /// One run, one network: resuming from another public address or autonomous system would
    /// mix two networks in one run (a VPN switched on, a laptop moved).
    pub fn check(
        &self,
        run_id: &str,
        public_ip: Option<std::net::IpAddr>,
        asn: Option<u32>,
    ) -> anyhow::Result<()> {
        let ip = public_ip.map(|i| i.to_string());
        let moved_ip = self.public_ip.is_some() && ip.is_some() && self.public_ip != ip;
        let moved_asn = self.asn.is_some() && asn.is_some() && self.asn != asn;
        if moved_ip || moved_asn {
            let show = |ip: Option<&str>, asn: Option<u32>| {
                let asn = asn.map(|a| format!(" (AS{a})")).unwrap_or_default();
                format!("{}{asn}", ip.unwrap_or("?"))
            };
            bail!(
                "--resume: run `{run_id}` was measured from {}, this probe is now at {}; its \
                 records would mix two networks — start a new run",
                show(self.public_ip.as_deref(), self.asn),
                show(ip.as_deref(), asn)
            );
        }
        Ok(())
    }
}

/// How often `--lock-wait` tries the lock again.
const LOCK_POLL: std::time::Duration = std::time::Duration::from_millis(200);

/// Versioned migrations, applied in order on open. Frozen text: never edit one that has shipped
/// (a store created by it exists somewhere); a new report column comes in a new migration
/// (`ALTER TABLE records ADD COLUMN ...`), and `every_report_column_has_a_migration` fails
/// until it does.
fn migrations(d: Dialect) -> Vec<String> {
    let pk = match d {
        Dialect::Sqlite => "INTEGER PRIMARY KEY AUTOINCREMENT",
        Dialect::Postgres => "BIGSERIAL PRIMARY KEY",
    };
    vec![
        MIGRATION_1.replace("{pk}", pk),
        // Issue 10: the matched block-page fingerprint.
        "ALTER TABLE records ADD COLUMN blockpage_fingerprint TEXT".to_owned(),
        // Issue 12: what decided a verdict without a control path, and what ran.
        "ALTER TABLE records ADD COLUMN needs TEXT;
         ALTER TABLE records ADD COLUMN probes TEXT;
         ALTER TABLE records ADD COLUMN stalled_at_wire TEXT;
         ALTER TABLE records ADD COLUMN baseline TEXT;
         ALTER TABLE records ADD COLUMN baseline_bps TEXT"
            .to_owned(),
        // Issue 17: the run's network regime, on the run and on every record.
        "ALTER TABLE runs ADD COLUMN regime TEXT;
         ALTER TABLE records ADD COLUMN regime TEXT"
            .to_owned(),
        // Issue 13: where a run measured from (`--vantage`, else the host name).
        "ALTER TABLE runs ADD COLUMN vantage TEXT;
         ALTER TABLE records ADD COLUMN vantage TEXT"
            .to_owned(),
        // Issue 13: the probe's public address (`--public-ip-stun`).
        "ALTER TABLE records ADD COLUMN public_ip TEXT".to_owned(),
        // Issue 13: the public address's network (`--asn-db`).
        "ALTER TABLE records ADD COLUMN asn TEXT;
         ALTER TABLE records ADD COLUMN as_org TEXT;
         ALTER TABLE records ADD COLUMN country TEXT"
            .to_owned(),
    ]
}

/// Schema version 1 (blockprobe 0.1, report schema v3).
const MIGRATION_1: &str = "CREATE TABLE runs (
            run_id TEXT PRIMARY KEY,
            started_at TEXT NOT NULL,
            finished_at TEXT,
            status TEXT NOT NULL,
            tool_version TEXT NOT NULL,
            host_name TEXT NOT NULL,
            resolvers TEXT NOT NULL,
            control_resolvers TEXT NOT NULL,
            sources TEXT NOT NULL,
            probes TEXT NOT NULL,
            records BIGINT NOT NULL DEFAULT 0,
            blocked BIGINT NOT NULL DEFAULT 0,
            throttled BIGINT NOT NULL DEFAULT 0
        );
        CREATE TABLE records (
            id {pk},
            run_id TEXT NOT NULL REFERENCES runs (run_id),
            measured_at TEXT NOT NULL,
            started_at TEXT,
            tool_version TEXT,
            target TEXT,
            category TEXT,
            kind TEXT,
            host TEXT,
            port TEXT,
            resolver TEXT,
            resolver_spec TEXT,
            verdict TEXT,
            layer TEXT,
            reason TEXT,
            detail TEXT,
            dns_transport TEXT,
            dns_rcode TEXT,
            dns_error TEXT,
            dns_answers TEXT,
            dns_cnames TEXT,
            dns_injected_answers TEXT,
            dns_elapsed_ms TEXT,
            control_rcode TEXT,
            control_answers TEXT,
            resolver_healthy TEXT,
            tcp_connected TEXT,
            tcp_error TEXT,
            tls_version TEXT,
            tls_verified TEXT,
            tls_error TEXT,
            tls_decoy_ok TEXT,
            http_status TEXT,
            http_title TEXT,
            redirects TEXT,
            bytes TEXT,
            throughput_bps TEXT,
            stalled_at TEXT,
            control_path_status TEXT,
            control_throughput_bps TEXT,
            tries TEXT,
            elapsed_ms TEXT,
            record TEXT NOT NULL,
            UNIQUE (run_id, target, resolver)
        );
        CREATE INDEX records_by_target ON records (target, resolver, run_id);
        CREATE INDEX runs_by_host ON runs (host_name, started_at);";

/// Where a store lives, from `--store URL`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreUrl {
    Sqlite(std::path::PathBuf),
    Postgres(String),
}

impl std::str::FromStr for StoreUrl {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(p) = s
            .strip_prefix("sqlite://")
            .or_else(|| s.strip_prefix("sqlite:"))
        {
            if p.is_empty() {
                return Err("sqlite: needs a path, e.g. sqlite:runs.db".into());
            }
            return Ok(Self::Sqlite(p.into()));
        }
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            return Ok(Self::Postgres(s.to_owned()));
        }
        Err(format!(
            "unsupported store `{s}` (use sqlite:PATH or postgres://USER@HOST/DB)"
        ))
    }
}

impl std::fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite(p) => write!(f, "sqlite:{}", p.display()),
            // Never print a password.
            Self::Postgres(u) => match url::Url::parse(u) {
                Ok(mut url) if url.password().is_some() => {
                    let _ = url.set_password(Some("***"));
                    write!(f, "{url}")
                }
                _ => f.write_str(u),
            },
        }
    }
}

/// The default store of `history`, `diff` and `export`: `$XDG_DATA_HOME/blockprobe/runs.db`.
pub fn default_url() -> StoreUrl {
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".local/share")))
        .unwrap_or_else(|| ".".into());
    StoreUrl::Sqlite(base.join("blockprobe").join("runs.db"))
}

/// Another run holds the store's lock (exit status 75 for cron: "try again later").
#[derive(Debug, thiserror::Error)]
#[error(
    "another blockprobe run holds the lock of {store} for host `{host}`{holder}; \
     pass --lock-wait to wait for it"
)]
pub struct Busy {
    pub store: String,
    pub host: String,
    pub holder: String,
}

pub struct Store {
    db: Box<dyn Db>,
    pub url: StoreUrl,
}

pub fn host_name() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

impl Store {
    /// Opens (creating a SQLite file and its directory if needed) and migrates.
    pub fn open(url: &StoreUrl) -> anyhow::Result<Self> {
        let db: Box<dyn Db> = match url {
            StoreUrl::Sqlite(p) => Box::new(sqlite::Sqlite::open(p)?),
            StoreUrl::Postgres(u) => Box::new(postgres::Postgres::connect(u)?),
        };
        let mut store = Self {
            db,
            url: url.clone(),
        };
        store
            .migrate()
            .with_context(|| format!("cannot migrate store {url}"))?;
        Ok(store)
    }

    /// Opens an existing store only (for reading commands): a missing SQLite file is an error
    /// rather than a new empty store.
    pub fn open_existing(url: &StoreUrl) -> anyhow::Result<Self> {
        if let StoreUrl::Sqlite(p) = url
            && !p.exists()
        {
            bail!(
                "no store at {} (scan with --store {url} first)",
                p.display()
            );
        }
        Self::open(url)
    }

    /// Applies the missing migrations in one exclusive transaction, so concurrent openers
    /// (cron runs, a fleet's first start) never apply one twice.
    fn migrate(&mut self) -> anyhow::Result<()> {
        self.db.batch(
            "CREATE TABLE IF NOT EXISTS blockprobe_migrations (
                version BIGINT PRIMARY KEY, applied_at TEXT NOT NULL)",
        )?;
        self.db.batch(match self.db.dialect() {
            Dialect::Sqlite => "BEGIN IMMEDIATE",
            Dialect::Postgres => "BEGIN; LOCK TABLE blockprobe_migrations IN EXCLUSIVE MODE",
        })?;
        let res = self.apply_migrations();
        match res {
            Ok(()) => self.db.batch("COMMIT"),
            Err(e) => {
                let _ = self.db.batch("ROLLBACK");
                Err(e)
            }
        }
    }

    fn apply_migrations(&mut self) -> anyhow::Result<()> {
        let current = self.schema_version()?;
        let all = migrations(self.db.dialect());
        if current > all.len() as i64 {
            bail!(
                "the store's schema is version {current}, newer than this blockprobe knows ({}); upgrade blockprobe",
                all.len()
            );
        }
        for (i, m) in all.iter().enumerate().skip(current as usize) {
            self.db.batch(m)?;
            let sql =
                self.sql("INSERT INTO blockprobe_migrations (version, applied_at) VALUES (?, ?)");
            self.db
                .execute(&sql, &[Value::Int(i as i64 + 1), now().into()])?;
        }
        Ok(())
    }

    /// The schema version after migrations.
    pub fn schema_version(&mut self) -> anyhow::Result<i64> {
        let r = self
            .db
            .query("SELECT MAX(version) FROM blockprobe_migrations", &[])?;
        Ok(r.first()
            .and_then(|r| r.first())
            .and_then(Value::int)
            .unwrap_or(0))
    }

    fn sql(&self, s: &str) -> String {
        placeholders(s, self.db.dialect())
    }

    pub fn execute(&mut self, sql: &str, params: &[Value]) -> anyhow::Result<u64> {
        let sql = self.sql(sql);
        self.db.execute(&sql, params)
    }

    pub fn query(&mut self, sql: &str, params: &[Value]) -> anyhow::Result<Vec<Vec<Value>>> {
        let sql = self.sql(sql);
        self.db.query(&sql, params)
    }

    /// Takes this host's lock for the rest of the process's life. With `wait`, tries again
    /// until it is free, or until `interrupted()` says to give up (an interrupt must not be
    /// swallowed by a wait that blocks in the kernel or the database).
    pub fn lock(
        &mut self,
        holder: &str,
        wait: bool,
        interrupted: impl Fn() -> bool,
    ) -> anyhow::Result<()> {
        let host = host_name();
        let mut announced = false;
        while !self.db.try_lock(&host, holder)? {
            let busy = self.busy(host.clone())?;
            if !wait {
                return Err(busy);
            }
            if !std::mem::replace(&mut announced, true) {
                crate::report::warn(format_args!("{busy}; waiting for it (--lock-wait)"));
            }
            if interrupted() {
                return Err(crate::Interrupted.into());
            }
            std::thread::sleep(LOCK_POLL);
        }
        Ok(())
    }

    fn busy(&mut self, host: String) -> anyhow::Result<anyhow::Error> {
        // Name the run that holds it, when the store knows one still running on this host.
        let running = self.query(
            "SELECT run_id, started_at FROM runs WHERE host_name = ? AND status = 'running' ORDER BY started_at DESC LIMIT 1",
            &[host.clone().into()],
        )?;
        let holder = running
            .first()
            .map(|r| {
                format!(
                    " (run {} started at {})",
                    r[0].str_or_empty(),
                    r[1].str_or_empty()
                )
            })
            .unwrap_or_default();
        Ok(Busy {
            store: self.url.to_string(),
            host,
            holder,
        }
        .into())
    }

    /// Records a new run, `running` until [`Writer::finish`].
    pub fn begin_run(&mut self, meta: &RunMeta, sources: &[String]) -> anyhow::Result<()> {
        let exists = self.query(
            "SELECT 1 FROM runs WHERE run_id = ?",
            &[meta.run_id.clone().into()],
        )?;
        if !exists.is_empty() {
            bail!(
                "run `{}` is already in the store; use --resume {0} to continue it",
                meta.run_id
            );
        }
        self.execute(
            "INSERT INTO runs (run_id, started_at, status, tool_version, host_name, resolvers, \
             control_resolvers, sources, probes, vantage) VALUES (?, ?, 'running', ?, ?, ?, ?, ?, ?, ?)",
            &[
                meta.run_id.clone().into(),
                meta.started_at.clone().into(),
                meta.tool_version.clone().into(),
                host_name().into(),
                serde_json::to_string(&meta.resolvers)?.into(),
                serde_json::to_string(&meta.control_resolvers)?.into(),
                serde_json::to_string(sources)?.into(),
                meta.probes.join(",").into(),
                meta.vantage.clone().into(),
            ],
        )?;
        Ok(())
    }

    /// `--resume RUN_ID`: checks the run can be continued with these resolvers and returns
    /// the (target, resolver) pairs it has recorded, the run's start time and the network it
    /// was measured from.
    pub fn resume(&mut self, meta: &RunMeta) -> anyhow::Result<Resumed> {
        let rows = self.query(
            "SELECT status, resolvers, started_at, vantage FROM runs WHERE run_id = ?",
            &[meta.run_id.clone().into()],
        )?;
        let Some(row) = rows.first() else {
            bail!("--resume: no run `{}` in {}", meta.run_id, self.url);
        };
        let status = row[0].str_or_empty();
        if status == "complete" {
            bail!(
                "--resume: run `{}` is complete; nothing to resume",
                meta.run_id
            );
        }
        let resolvers = serde_json::to_string(&meta.resolvers)?;
        if row[1].str_or_empty() != resolvers {
            bail!(
                "--resume: run `{}` used the resolvers {}, this command line has {resolvers}; \
                 resume with the same --resolver flags",
                meta.run_id,
                row[1].str_or_empty()
            );
        }
        // One run, one vantage: resuming from elsewhere would mix two places in one run.
        if let Some(v) = row[3].text()
            && v != meta.vantage
        {
            bail!(
                "--resume: run `{}` was measured from vantage `{v}`, this command line's is `{}`; resume it there, or with --vantage {v}",
                meta.run_id,
                meta.vantage
            );
        }
        let started_at = row[2].str_or_empty();
        let network = self
            .query(
                "SELECT public_ip, asn FROM records WHERE run_id = ? ORDER BY id LIMIT 1",
                &[meta.run_id.clone().into()],
            )?
            .first()
            .map(|r| RunNetwork {
                public_ip: r[0].text().filter(|t| !t.is_empty()).map(str::to_owned),
                asn: r[1].text().and_then(|a| a.parse().ok()),
            })
            .unwrap_or_default();
        network.check(&meta.run_id, meta.public_ip, None)?;
        let done = self.query(
            "SELECT target, resolver FROM records WHERE run_id = ?",
            &[meta.run_id.clone().into()],
        )?;
        self.execute(
            "UPDATE runs SET status = 'running', finished_at = NULL WHERE run_id = ?",
            &[meta.run_id.clone().into()],
        )?;
        Ok(Resumed {
            done: done
                .into_iter()
                .map(|r| (r[0].str_or_empty(), r[1].str_or_empty()))
                .collect(),
            started_at,
            network,
        })
    }

    /// Inserts a batch in one transaction, up to [`ROWS_PER_INSERT`] rows per statement.
    fn insert(&mut self, batch: &[(String, Record)]) -> anyhow::Result<()> {
        self.db.batch("BEGIN")?;
        for chunk in batch.chunks(ROWS_PER_INSERT) {
            let sql = self.insert_sql(chunk.len());
            let mut params: Vec<Value> = Vec::with_capacity(chunk.len() * (COLUMNS.len() + 2));
            for (measured_at, rec) in chunk {
                params.push(rec.run_id.clone().into());
                params.push(measured_at.clone().into());
                for (name, v) in COLUMNS.iter().zip(rec.csv_row()) {
                    if *name != "run_id" {
                        params.push(if v.is_empty() { Value::Null } else { v.into() });
                    }
                }
                params.push(serde_json::to_string(rec)?.into());
            }
            if let Err(e) = self.db.execute(&sql, &params) {
                let _ = self.db.batch("ROLLBACK");
                return Err(e);
            }
        }
        self.db.batch("COMMIT")
    }

    fn insert_sql(&self, rows: usize) -> String {
        let cols: Vec<&str> = record_columns().collect();
        let one = format!("(?, ?, {}, ?)", vec!["?"; cols.len()].join(", "));
        self.sql(&format!(
            "INSERT INTO records (run_id, measured_at, {}, record) VALUES {} ON CONFLICT DO NOTHING",
            cols.join(", "),
            vec![one; rows].join(", ")
        ))
    }

    /// Deletes the runs started before `before` (RFC 3339) that are not running, with their
    /// records, in one transaction. Returns (runs, records) deleted (or that would be).
    pub fn prune(&mut self, before: &str, dry_run: bool) -> anyhow::Result<(i64, i64)> {
        let old = "SELECT run_id FROM runs WHERE started_at < ? AND status <> 'running'";
        let count = |st: &mut Self, sql: &str| -> anyhow::Result<i64> {
            Ok(st.query(sql, &[before.into()])?[0][0].int().unwrap_or(0))
        };
        let runs = count(self, &format!("SELECT COUNT(*) FROM ({old}) AS o"))?;
        let records = count(
            self,
            &format!("SELECT COUNT(*) FROM records WHERE run_id IN ({old})"),
        )?;
        if dry_run || runs == 0 {
            return Ok((runs, records));
        }
        self.db.batch("BEGIN")?;
        let res = self
            .execute(
                &format!("DELETE FROM records WHERE run_id IN ({old})"),
                &[before.into()],
            )
            .and_then(|_| {
                self.execute(
                    "DELETE FROM runs WHERE started_at < ? AND status <> 'running'",
                    &[before.into()],
                )
            });
        match res {
            Ok(_) => self.db.batch("COMMIT")?,
            Err(e) => {
                let _ = self.db.batch("ROLLBACK");
                return Err(e);
            }
        }
        Ok((runs, records))
    }

    fn finish_run(&mut self, run_id: &str, status: &str) -> anyhow::Result<()> {
        let id: Value = run_id.into();
        let counts = self.query(
            "SELECT COUNT(*), \
             SUM(CASE WHEN verdict = 'blocked' THEN 1 ELSE 0 END), \
             SUM(CASE WHEN verdict = 'throttled' THEN 1 ELSE 0 END) \
             FROM records WHERE run_id = ?",
            std::slice::from_ref(&id),
        )?;
        let c = |i: usize| {
            counts
                .first()
                .and_then(|r| r.get(i))
                .and_then(Value::int)
                .unwrap_or(0)
        };
        self.execute(
            "UPDATE runs SET finished_at = ?, status = ?, records = ?, blocked = ?, throttled = ? WHERE run_id = ?",
            &[
                now().into(),
                status.into(),
                c(0).into(),
                c(1).into(),
                c(2).into(),
                id,
            ],
        )?;
        Ok(())
    }

    /// Moves the store to a writer thread that inserts records in batches (one transaction per
    /// batch of whatever has arrived), so the scan never waits on the disk.
    pub fn into_writer(self, run_id: String) -> Writer {
        // Bounded: a store slower than the scan slows the scan instead of filling memory.
        let (tx, rx) = tokio::sync::mpsc::channel::<Msg>(WRITE_QUEUE);
        let error: Arc<Mutex<Option<String>>> = Arc::default();
        let err = error.clone();
        let handle = std::thread::Builder::new()
            .name("store".into())
            .spawn(move || writer_loop(self, &run_id, rx, &err))
            .expect("spawn the store writer");
        Writer {
            tx: Some(tx),
            handle: Some(handle),
            error,
        }
    }
}

enum Msg {
    Record(Box<(String, Record)>),
    Regime(String),
    Finish(String),
}

fn writer_loop(
    mut store: Store,
    run_id: &str,
    mut rx: tokio::sync::mpsc::Receiver<Msg>,
    error: &Mutex<Option<String>>,
) -> anyhow::Result<()> {
    let fail = |e: &anyhow::Error| {
        let mut slot = error.lock().expect("store error lock");
        slot.get_or_insert_with(|| format!("{e:#}"));
    };
    let mut batch: Vec<(String, Record)> = Vec::new();
    let mut finish: Option<String> = None;
    while finish.is_none() {
        let Some(first) = rx.blocking_recv() else {
            break;
        };
        let mut next = Some(first);
        while let Some(m) = next {
            match m {
                Msg::Record(r) => batch.push(*r),
                Msg::Regime(regime) => {
                    let set = store.execute(
                        "UPDATE runs SET regime = ? WHERE run_id = ?",
                        &[regime.into(), run_id.to_owned().into()],
                    );
                    if let Err(e) = set {
                        fail(&e);
                        return Err(e);
                    }
                }
                Msg::Finish(status) => finish = Some(status),
            }
            next = if batch.len() >= 1000 || finish.is_some() {
                None
            } else {
                rx.try_recv().ok()
            };
        }
        if !batch.is_empty() {
            if let Err(e) = store.insert(&batch) {
                fail(&e);
                return Err(e);
            }
            batch.clear();
        }
    }
    // A writer dropped without `finish` (a failed scan) leaves the run `running`: resumable.
    if let Some(status) = finish
        && let Err(e) = store.finish_run(run_id, &status)
    {
        fail(&e);
        return Err(e);
    }
    Ok(())
}

/// The handle the scan writes through.
/// Rows per INSERT statement (fewer round trips; far below both databases' parameter limits).
const ROWS_PER_INSERT: usize = 100;

/// Records queued for the store at most.
const WRITE_QUEUE: usize = 4_096;

pub struct Writer {
    tx: Option<tokio::sync::mpsc::Sender<Msg>>,
    handle: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
    error: Arc<Mutex<Option<String>>>,
}

impl Writer {
    /// Queues a record; waits while the queue is full.
    pub async fn write(&self, rec: &Record) -> anyhow::Result<()> {
        if let Some(e) = self.error.lock().expect("store error lock").as_ref() {
            bail!("the store failed: {e}");
        }
        if let Some(tx) = &self.tx {
            let _ = tx.send(Msg::Record(Box::new((now(), rec.clone())))).await;
        }
        Ok(())
    }

    /// Records the run's network regime.
    pub async fn regime(&self, regime: &str) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Msg::Regime(regime.to_owned())).await;
        }
    }

    /// Commits what is pending and closes the run with `status` (`complete`, `interrupted`).
    pub fn finish(mut self, status: &str) -> anyhow::Result<()> {
        if let Some(tx) = self.tx.take() {
            let _ = tx.blocking_send(Msg::Finish(status.to_owned()));
        }
        match self.handle.take().map(std::thread::JoinHandle::join) {
            Some(Ok(r)) => r.context("the store failed"),
            Some(Err(_)) => bail!("the store writer panicked"),
            None => Ok(()),
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Without `finish`: commit what was sent, leave the run `running` (resumable).
        self.tx.take();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

pub fn now() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_for_postgres() {
        assert_eq!(
            placeholders("a = ? AND b = ?", Dialect::Postgres),
            "a = $1 AND b = $2"
        );
        assert_eq!(placeholders("a = ?", Dialect::Sqlite), "a = ?");
    }

    #[test]
    fn store_urls() {
        assert_eq!(
            "sqlite:/tmp/x.db".parse::<StoreUrl>().unwrap(),
            StoreUrl::Sqlite("/tmp/x.db".into())
        );
        assert!(matches!(
            "postgres://u@localhost/db".parse::<StoreUrl>().unwrap(),
            StoreUrl::Postgres(_)
        ));
        assert!("mysql://x".parse::<StoreUrl>().is_err());
        assert!("sqlite:".parse::<StoreUrl>().is_err());
        let shown = "postgres://u:secret@localhost/db"
            .parse::<StoreUrl>()
            .unwrap()
            .to_string();
        assert!(!shown.contains("secret"), "{shown}");
    }

    /// Issue 11, item 6: the shipped schema is frozen text, and a report column added later
    /// must come with a migration of its own.
    #[test]
    fn every_report_column_has_a_migration() {
        let dir = tempfile::tempdir().unwrap();
        let url = StoreUrl::Sqlite(dir.path().join("s.db"));
        let mut st = Store::open(&url).unwrap();
        let rows = st
            .query("SELECT name FROM pragma_table_info('records')", &[])
            .unwrap();
        let have: Vec<String> = rows.iter().map(|r| r[0].str_or_empty()).collect();
        for c in record_columns() {
            assert!(
                have.iter().any(|h| h == c),
                "report column `{c}` has no migration"
            );
        }
    }

    /// A store created by schema version 1 (and holding data) opens with this version and
    /// takes new records.
    #[test]
    fn a_store_created_by_the_first_schema_upgrades() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v1.db");
        {
            let c = rusqlite::Connection::open(&path).unwrap();
            c.execute_batch(&MIGRATION_1.replace("{pk}", "INTEGER PRIMARY KEY AUTOINCREMENT"))
                .unwrap();
            c.execute_batch(
                "CREATE TABLE blockprobe_migrations (version BIGINT PRIMARY KEY, applied_at TEXT NOT NULL);
                 INSERT INTO blockprobe_migrations VALUES (1, '2026-11-01T00:00:00Z');
                 INSERT INTO runs (run_id, started_at, status, tool_version, host_name, resolvers,
                   control_resolvers, sources, probes) VALUES ('old', '2026-11-01T00:00:00Z',
                   'complete', '0.1.0', 'h', '[]', '[]', '[]', '[]');",
            )
            .unwrap();
        }
        let mut st = Store::open(&StoreUrl::Sqlite(path)).unwrap();
        assert_eq!(
            st.schema_version().unwrap(),
            migrations(Dialect::Sqlite).len() as i64
        );
        let old = st
            .query("SELECT status FROM runs WHERE run_id = 'old'", &[])
            .unwrap();
        assert_eq!(old[0][0], Value::from("complete"));
    }
}
