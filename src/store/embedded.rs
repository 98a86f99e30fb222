//! The embedded, managed PostgreSQL cluster: `jifen serve` without `--database-url`, and the
//! tests.
//!
//! The cluster lives in `<data dir>/pgdata`, created by `initdb` on first start. The server
//! listens on a unix socket in `<data dir>/run` only (`listen_addresses = ''`: no TCP port) and
//! is stopped by [`Cluster::stop`] (or on drop). PostgreSQL refuses to run as root, so when
//! jifen runs as root, the cluster's files are owned by, and the server runs as, the
//! unprivileged user `nobody` (override with `JIFEN_PG_USER`). The server binaries are the
//! ones the OS packages (`initdb`, `pg_ctl`, `postgres` on `PATH` or in
//! `/usr/lib/postgresql/<version>/bin`).
//!
//! One process owns a data directory: [`Cluster::start`] takes an exclusive lock on
//! `<data dir>/jifen.lock` (an advisory `flock`, released by the kernel however the process
//! ends) and writes its pid there. A second start on a directory in use fails with
//! [`EmbeddedError::InUse`], naming the holder, before it touches anything. A start that takes
//! the lock and finds a PostgreSQL still running on the cluster (left behind by a jifen that
//! was killed: `pg_ctl` detaches the server) stops it first, then starts it as usual.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use thiserror::Error;

/// The superuser the managed cluster is initialised with (owner of the schema).
pub const SUPERUSER: &str = "jifen";
/// The port number in the socket file name (`.s.PGSQL.5432`); no TCP port is opened.
const SOCKET_PORT: u16 = 5432;

/// Why the managed cluster could not be used.
#[derive(Debug, Error)]
pub enum EmbeddedError {
    #[error(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found (JIFEN_PG_BINDIR, PATH, /usr/lib/postgresql/*/bin). \
         Install them (Debian/Ubuntu: `apt-get install postgresql`; Fedora/RHEL: `dnf install postgresql-server`; \
         macOS: `brew install postgresql`), or pass --database-url to use an existing PostgreSQL server"
    )]
    BinariesNotFound,
    #[error("running as root, and the unprivileged user {0:?} that PostgreSQL must run as does not exist (set JIFEN_PG_USER)")]
    NoUnprivilegedUser(String),
    #[error("{action} failed: {detail}")]
    Command { action: &'static str, detail: String },
    #[error(
        "PostgreSQL runs as an unprivileged user, who cannot reach {data_dir}: {blocking} is not searchable by others. \
         Choose a data directory outside it (e.g. /var/lib/jifen) or `chmod o+x {blocking}`"
    )]
    Unreachable { data_dir: PathBuf, blocking: PathBuf },
    #[error(
        "the data directory {data_dir} is in use by another jifen process{}: stop that one first, or give this one another --data-dir",
        pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
    )]
    InUse { data_dir: PathBuf, pid: Option<u32> },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// The lock file in a data directory.
pub const LOCK_FILE: &str = "jifen.lock";

/// Takes the data directory's lock for this process and writes its pid into the lock file,
/// or names the process that holds it.
fn lock(data_dir: &Path) -> Result<fs::File, EmbeddedError> {
    use std::io::{Read, Seek, Write};
    let path = data_dir.join(LOCK_FILE);
    let mut file = fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io(&path))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            let mut held = String::new();
            let _ = file.read_to_string(&mut held);
            return Err(EmbeddedError::InUse { data_dir: data_dir.to_owned(), pid: held.trim().parse().ok() });
        }
        Err(fs::TryLockError::Error(e)) => return Err(EmbeddedError::Io { path, source: e }),
    }
    file.set_len(0).and_then(|()| file.rewind()).and_then(|()| writeln!(file, "{}", std::process::id())).map_err(io(&path))?;
    Ok(file)
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> EmbeddedError + '_ {
    move |source| EmbeddedError::Io { path: path.to_owned(), source }
}

/// Finds the directory holding `initdb`, `pg_ctl` and `postgres`: `JIFEN_PG_BINDIR` if set
/// (and only there), else `PATH`, else the newest `/usr/lib/postgresql/<version>/bin`.
pub fn find_binaries() -> Result<PathBuf, EmbeddedError> {
    let has_all = |d: &Path| ["initdb", "pg_ctl", "postgres"].iter().all(|b| d.join(b).is_file());
    if let Some(dir) = std::env::var_os("JIFEN_PG_BINDIR") {
        let dir = PathBuf::from(dir);
        return if has_all(&dir) { Ok(dir) } else { Err(EmbeddedError::BinariesNotFound) };
    }
    if let Some(path) = std::env::var_os("PATH") {
        if let Some(d) = std::env::split_paths(&path).find(|d| has_all(d)) {
            return Ok(d);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, d)| has_all(d))
        .collect();
    versions.sort();
    versions.pop().map(|(_, d)| d).ok_or(EmbeddedError::BinariesNotFound)
}

/// The effective user id of this process (from /proc, without libc).
fn effective_uid() -> u32 {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).and_then(|l| l.split_whitespace().nth(2)?.parse().ok()))
        .unwrap_or(u32::MAX)
}

/// The uid and gid of a user from /etc/passwd.
fn lookup_user(name: &str) -> Option<(u32, u32)> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 3 && f[0] == name).then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))?
    })
}

/// A running managed cluster.
#[derive(Debug)]
pub struct Cluster {
    bin: PathBuf,
    pgdata: PathBuf,
    socket_dir: PathBuf,
    run_as: Option<(u32, u32)>,
    /// The postmaster's pid, read after start: the fallback for stopping it.
    pid: Option<u32>,
    /// Whether there is no server of ours to stop (before it started, or once stopped).
    stopped: bool,
    /// The server's options (`pg_ctl start -o`).
    options: String,
    /// Its port (on the unix socket, and on TCP if it listens there).
    port: u16,
    /// The data directory's lock, held as long as the cluster is ours.
    _lock: fs::File,
}

impl Cluster {
    /// Starts the cluster in `data_dir`, creating it on first use.
    pub fn start(data_dir: &Path) -> Result<Cluster, EmbeddedError> {
        let bin = find_binaries()?;
        let run_as = if effective_uid() == 0 {
            let user = std::env::var("JIFEN_PG_USER").unwrap_or_else(|_| "nobody".to_owned());
            Some(lookup_user(&user).ok_or(EmbeddedError::NoUnprivilegedUser(user))?)
        } else {
            None
        };
        fs::create_dir_all(data_dir).map_err(io(data_dir))?;
        let data_dir = data_dir.canonicalize().map_err(io(data_dir))?;
        // Before anything in the directory is touched.
        let lock = lock(&data_dir)?;
        let pgdata = data_dir.join("pgdata");
        let socket_dir = data_dir.join("run");
        // Nothing to stop until this start has started the server: a failed start never stops
        // a server it did not start.
        let mut cluster =
            Cluster { bin, pgdata, socket_dir, run_as, pid: None, stopped: true, options: String::new(), port: SOCKET_PORT, _lock: lock };
        for dir in [&cluster.pgdata, &cluster.socket_dir] {
            fs::create_dir_all(dir).map_err(io(dir))?;
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io(dir))?;
            if let Some((uid, gid)) = run_as {
                std::os::unix::fs::chown(dir, Some(uid), Some(gid)).map_err(io(dir))?;
            }
        }
        if run_as.is_some() {
            // The unprivileged server must be able to reach its directories.
            for ancestor in data_dir.ancestors().skip(1) {
                let mode = fs::metadata(ancestor).map_err(io(ancestor))?.permissions().mode();
                if mode & 0o001 == 0 {
                    return Err(EmbeddedError::Unreachable { data_dir: data_dir.clone(), blocking: ancestor.to_owned() });
                }
            }
            fs::set_permissions(&data_dir, fs::Permissions::from_mode(0o755)).map_err(io(&data_dir))?;
        }
        if !cluster.pgdata.join("PG_VERSION").exists() {
            cluster.run(
                "initdb",
                Command::new(cluster.bin.join("initdb")).arg("-D").arg(&cluster.pgdata).args([
                    "-U",
                    SUPERUSER,
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--locale=C",
                    "--no-instructions",
                ]),
            )?;
        }
        let options = format!(
            "-c listen_addresses='' -c unix_socket_directories='{}' -c port={SOCKET_PORT} \
             -c max_wal_size=1GB -c work_mem=16MB -c max_connections=100",
            cluster.socket_dir.display()
        );
        cluster.options = options;
        cluster.stop_orphan()?;
        cluster.start_again()?;
        Ok(cluster)
    }

    /// Starts the server again after [`Cluster::stop`] (or starts it the first time).
    pub fn start_again(&mut self) -> Result<(), EmbeddedError> {
        let options = self.options.clone();
        let started = self.pg_ctl("pg_ctl start", &["-o", &options, "start"]);
        // A start that failed late (pg_ctl gave up waiting, say during a long recovery) may
        // have left its server running: it is this start's, stopped with the cluster.
        if started.is_ok() || self.pgdata.join("postmaster.pid").exists() {
            self.stopped = false;
        }
        started
    }

    /// Stops a server left running on this cluster by an earlier process that held the lock
    /// and was killed (this process holds the lock now, so no live jifen owns that server).
    fn stop_orphan(&mut self) -> Result<(), EmbeddedError> {
        let pid_file = self.pgdata.join("postmaster.pid");
        let Ok(text) = fs::read_to_string(&pid_file) else { return Ok(()) };
        let mut status = Command::new(self.bin.join("pg_ctl"));
        status.arg("-D").arg(&self.pgdata).arg("status");
        if let Some((uid, gid)) = self.run_as {
            status.uid(uid).gid(gid).current_dir("/");
        }
        // 0: running; 3: not running (a stale pid file, which the start handles itself).
        let running = status.output().map(|o| o.status.success()).unwrap_or(false);
        let postmaster = text.lines().next().unwrap_or("").trim().to_owned();
        // `pg_ctl status` only asks whether the pid is alive: after a reboot a stale pid file
        // may name some other process. A postmaster works in its data directory; anything
        // else is left alone (and the start then says why it cannot start).
        let ours = fs::read_link(format!("/proc/{postmaster}/cwd")).ok() == fs::canonicalize(&self.pgdata).ok();
        if !running || !ours {
            return Ok(());
        }
        tracing::warn!(
            postmaster = %postmaster,
            pgdata = %self.pgdata.display(),
            "PostgreSQL was left running by an earlier jifen on this data directory (killed before it could stop it): stopping it before this start"
        );
        let stop = |mode: &str| {
            self.run(
                "pg_ctl stop (a server left running)",
                Command::new(self.bin.join("pg_ctl")).arg("-D").arg(&self.pgdata).args(["-w", "-t", "60", "-m", mode, "stop"]),
            )
        };
        stop("fast").or_else(|_| stop("immediate"))
    }

    fn run(&self, action: &'static str, cmd: &mut Command) -> Result<(), EmbeddedError> {
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid).gid(gid).current_dir("/");
        }
        let out = cmd.output().map_err(|e| EmbeddedError::Command { action, detail: e.to_string() })?;
        if !out.status.success() {
            let log = fs::read_to_string(self.socket_dir.join("postgres.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(10).collect();
            return Err(EmbeddedError::Command {
                action,
                detail: format!(
                    "{}{}{}",
                    String::from_utf8_lossy(&out.stderr).trim(),
                    if tail.is_empty() { "" } else { "\nserver log:\n" },
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                ),
            });
        }
        Ok(())
    }

    /// A PostgreSQL program of the cluster's own version (`pg_dump`, `pg_restore`, `createdb` …).
    pub fn binary(&self, name: &str) -> PathBuf {
        let here = self.bin.join(name);
        if here.is_file() {
            return here;
        }
        // The server's programs may be links on PATH into the installation's own directory
        // (Debian's /usr/lib/postgresql/<version>/bin), which holds the others.
        fs::canonicalize(self.bin.join("pg_ctl")).ok().and_then(|p| Some(p.parent()?.join(name))).filter(|p| p.is_file()).unwrap_or(here)
    }

    /// The libpq connection string for `dbname` as `user` (over the unix socket).
    pub fn connection_string(&self, user: &str, dbname: &str) -> String {
        format!("host={} port={} user={user} dbname={dbname}", self.socket_dir.display(), self.port)
    }

    /// A server setting for the next start, after the cluster's own (which it overrides): a
    /// test has the server listen on TCP with TLS, say. Setting `port` moves the unix socket
    /// too, and [`Cluster::connection_string`] follows.
    pub fn set(&mut self, name: &str, value: &str) {
        if name == "port" {
            if let Ok(port) = value.parse() {
                self.port = port;
            }
        }
        self.options.push_str(&format!(" -c {name}='{}'", value.replace('\'', "''")));
    }

    /// Writes a file into the cluster's data directory, owned by the server's user, with
    /// `mode` (a TLS key the server reads must be its own and private).
    pub fn write_file(&self, name: &str, contents: &[u8], mode: u32) -> Result<PathBuf, EmbeddedError> {
        let path = self.pgdata.join(name);
        fs::write(&path, contents).map_err(io(&path))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).map_err(io(&path))?;
        if let Some((uid, gid)) = self.run_as {
            std::os::unix::fs::chown(&path, Some(uid), Some(gid)).map_err(io(&path))?;
        }
        Ok(path)
    }

    /// Restarts the server as after a crash: immediate shutdown (no checkpoint, clients cut
    /// off mid-transaction), then a start that recovers from the WAL. Returns once it accepts
    /// connections again.
    pub fn crash_restart(&mut self) -> Result<(), EmbeddedError> {
        self.pg_ctl("pg_ctl restart", &["-m", "immediate", "restart"])
    }

    /// Runs `pg_ctl` on the cluster (waiting, logging to the socket directory), then notes
    /// the postmaster's pid.
    fn pg_ctl(&mut self, action: &'static str, args: &[&str]) -> Result<(), EmbeddedError> {
        self.run(
            action,
            Command::new(self.bin.join("pg_ctl"))
                .arg("-D")
                .arg(&self.pgdata)
                .arg("-l")
                .arg(self.socket_dir.join("postgres.log"))
                .args(["-w", "-t", "60"])
                .args(args),
        )?;
        self.pid = fs::read_to_string(self.pgdata.join("postmaster.pid")).ok().and_then(|s| s.lines().next()?.trim().parse().ok());
        Ok(())
    }

    /// Stops the server (fast shutdown: in-flight transactions are rolled back, committed
    /// ones are durable).
    pub fn stop(&mut self) -> Result<(), EmbeddedError> {
        if self.stopped {
            return Ok(());
        }
        self.stopped = true;
        let stopped = self.run(
            "pg_ctl stop",
            Command::new(self.bin.join("pg_ctl")).arg("-D").arg(&self.pgdata).args(["-w", "-t", "60", "-m", "fast", "stop"]),
        );
        if stopped.is_err() {
            // pg_ctl could not do it (its data directory may be gone): signal the postmaster
            // directly, SIGINT being PostgreSQL's "fast shutdown".
            if let Some(pid) = self.pid {
                let _ = Command::new("kill").args(["-INT", &pid.to_string()]).status();
            }
        }
        stopped
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("jifen: stopping the embedded PostgreSQL: {e}");
        }
    }
}
