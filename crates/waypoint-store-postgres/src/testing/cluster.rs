//! A throwaway PostgreSQL cluster: `initdb` in a temporary directory, a server on 127.0.0.1 at a
//! free port (and a Unix socket in the same directory), removed again when dropped. Used by
//! `cargo xtask test` and by the tests that stop and restart a server of their own.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Names the server binaries' directory when they are not under /usr/lib/postgresql.
pub const BIN_VAR: &str = "WAYPOINT_TEST_POSTGRES_BIN";

/// A running (or stopped) throwaway cluster. Dropping it stops the server and removes its files.
#[derive(Debug)]
pub struct TestCluster {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    /// initdb and postgres refuse to run as root: then they run as this user.
    run_as: Option<String>,
}

/// The directory holding `initdb`, `pg_ctl` and `postgres`: `$WAYPOINT_TEST_POSTGRES_BIN`, else the
/// newest `/usr/lib/postgresql/<version>/bin`, else `pg_config --bindir`.
pub fn find_server_binaries() -> io::Result<PathBuf> {
    let has_server = |dir: &Path| ["initdb", "pg_ctl", "postgres"].iter().all(|b| dir.join(b).is_file());
    if let Some(dir) = std::env::var_os(BIN_VAR) {
        let dir = PathBuf::from(dir);
        return if has_server(&dir) {
            Ok(dir)
        } else {
            Err(io::Error::other(format!("{BIN_VAR}={} has no initdb, pg_ctl and postgres", dir.display())))
        };
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            has_server(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    if let Ok(output) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        if output.status.success() && has_server(&dir) {
            return Ok(dir);
        }
    }
    Err(io::Error::other(
        "no PostgreSQL server binaries found (looked in $WAYPOINT_TEST_POSTGRES_BIN, /usr/lib/postgresql/*/bin \
         and `pg_config --bindir`); install the server package, e.g. `apt-get install postgresql`",
    ))
}

impl TestCluster {
    /// Creates and starts a cluster with the binaries in `bin`.
    pub fn start(bin: &Path) -> io::Result<TestCluster> {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let dir = std::env::temp_dir().join(format!("waypoint-pg-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let run_as = if is_root(&dir)? { Some("postgres".to_owned()) } else { None };
        let mut cluster = TestCluster { bin: bin.to_path_buf(), dir, port: 0, run_as };
        if let Some(user) = &cluster.run_as {
            checked(Command::new("chown").arg("-R").arg(format!("{user}:")).arg(&cluster.dir).output(), "chown")?;
        }
        let data = cluster.data_dir();
        cluster.run(
            "initdb",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-U".as_ref(),
                "postgres".as_ref(),
                "--auth=trust".as_ref(),
                "-E".as_ref(),
                "UTF8".as_ref(),
                "--no-sync".as_ref(),
            ],
        )?;
        cluster.port = free_port()?;
        cluster.start_again()?;
        Ok(cluster)
    }

    /// Starts the server again after [`TestCluster::stop_immediately`], on the same port.
    pub fn start_again(&self) -> io::Result<()> {
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c max_connections=400 -c shared_buffers=64MB",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("server.log");
        let data = self.data_dir();
        self.run(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-l".as_ref(),
                log.as_os_str(),
                "-w".as_ref(),
                "-t".as_ref(),
                "60".as_ref(),
                "-o".as_ref(),
                options.as_ref(),
                "start".as_ref(),
            ],
        )
        .map(|_| ())
        .map_err(|e| {
            io::Error::other(format!("{e}\nserver log:\n{}", std::fs::read_to_string(&log).unwrap_or_default()))
        })
    }

    /// `pg_ctl stop -m immediate`: the server stops without a checkpoint, as in a crash.
    pub fn stop_immediately(&self) -> io::Result<()> {
        let data = self.data_dir();
        let args =
            ["-D".as_ref(), data.as_os_str(), "-m".as_ref(), "immediate".as_ref(), "-w".as_ref(), "stop".as_ref()];
        self.run("pg_ctl", &args).map(|_| ())
    }

    /// The URL of the `postgres` database as the `postgres` superuser over TCP.
    pub fn url(&self) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The TCP port the server listens on, on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The cluster's temporary directory, which holds its data directory and its Unix socket.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The server's version line (`postgres --version`).
    pub fn version(&self) -> String {
        Command::new(self.bin.join("postgres"))
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn run(&self, program: &str, args: &[&std::ffi::OsStr]) -> io::Result<Output> {
        let path = self.bin.join(program);
        let mut command = match &self.run_as {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.arg("-u").arg(user).arg("--").arg(&path);
                command
            }
            None => Command::new(&path),
        };
        // pg_ctl's server inherits these pipes unless redirected: `-l` sends its output to a file,
        // and stdin must not hold the caller's terminal.
        command.args(args).stdin(std::process::Stdio::null());
        checked(command.output(), program)
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if self.port != 0 {
            let data = self.data_dir();
            let args =
                ["-D".as_ref(), data.as_os_str(), "-m".as_ref(), "fast".as_ref(), "-w".as_ref(), "stop".as_ref()];
            if self.run("pg_ctl", &args).is_err() {
                let _ = self.stop_immediately();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn checked(output: io::Result<Output>, program: &str) -> io::Result<Output> {
    let output = output.map_err(|e| io::Error::new(e.kind(), format!("cannot run {program}: {e}")))?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(io::Error::other(format!(
            "{program} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )))
    }
}

/// Whether this process runs as root: the directory it just created is owned by uid 0.
fn is_root(created: &Path) -> io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    Ok(std::fs::metadata(created)?.uid() == 0)
}

/// A port nobody listens on right now. Another process could take it before the server does;
/// then the server fails to start, loudly.
fn free_port() -> io::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    drop(listener);
    // Give the kernel a moment to release it.
    std::thread::sleep(Duration::from_millis(10));
    Ok(port)
}
