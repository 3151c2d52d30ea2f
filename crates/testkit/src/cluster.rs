//! Real processes for fault tests: a NATS JetStream cluster, a PostgreSQL cluster of its own
//! (the machine's must never be stopped), and the platform's service binaries, each of which
//! can be killed with SIGKILL and started again. Everything is stopped when dropped; logs go
//! to files in a scratch directory, whose tail [`Procs::tails`] prints when a test fails.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 for a process to listen on (bound and released). Taken at
/// random below the kernel's ephemeral range (32768 and up on Linux): a port the kernel hands
/// out (to another test's listener on port 0, or as the local end of any outgoing connection)
/// could be taken between this call and the process's bind, and was (a chaos run's service
/// found its port in use).
pub fn free_port() -> u16 {
    for _ in 0..1000 {
        let port = fastrand::u16(10_000..32_000);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port between 10000 and 32000 after 1000 tries")
}

/// A scratch directory, removed on drop.
#[derive(Debug)]
pub struct Scratch(PathBuf);

impl Scratch {
    /// A new, empty directory under the system's temporary directory.
    pub fn new(prefix: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("{prefix}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("scratch directory");
        Scratch(dir)
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::env::var_os("SMS_CHAOS_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Runs `serve` on `listener` from a thread and tokio runtime of its own, for the life of the
/// test process: a peer (the carrier, a webhook endpoint) must not stall when the harness's
/// own runtime does (blocked in `pg_ctl`, or reaping a killed child), any more than a real one
/// would.
pub fn serve_apart<F, Fut>(name: &str, listener: std::net::TcpListener, serve: F)
where
    F: FnOnce(tokio::net::TcpListener) -> Fut + Send + 'static,
    Fut: std::future::Future,
{
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async move {
                listener
                    .set_nonblocking(true)
                    .expect("a non-blocking listener");
                let listener = tokio::net::TcpListener::from_std(listener).expect("a listener");
                serve(listener).await;
            });
        })
        .expect("a thread");
}

/// One process that can be killed and started again with the same command.
#[derive(Debug)]
pub struct Proc {
    /// Its name in logs.
    pub name: String,
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
    /// Times it was started.
    pub starts: u32,
}

impl Proc {
    /// A process of `program` with `args` and `env` (added to this process's environment),
    /// logging to `log_dir/name.log`. Not started.
    pub fn new(
        name: &str,
        program: impl Into<PathBuf>,
        args: Vec<String>,
        env: Vec<(String, String)>,
        log_dir: &Path,
    ) -> Proc {
        Proc {
            name: name.to_owned(),
            program: program.into(),
            args,
            env,
            log: log_dir.join(format!("{name}.log")),
            child: None,
            starts: 0,
        }
    }

    /// Starts it (appending to its log).
    pub fn start(&mut self) {
        // One that exited on its own is reaped, and may start again.
        if let Some(child) = &mut self.child
            && matches!(child.try_wait(), Ok(Some(_)))
        {
            self.child = None;
        }
        assert!(self.child.is_none(), "{} is already running", self.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let err = log.try_clone().expect("log file");
        let child = Command::new(&self.program)
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} ({:?}): {e}", self.name, self.program));
        self.child = Some(child);
        self.starts += 1;
    }

    /// Kills it with SIGKILL, as a crash would, and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether it is running (it may have exited on its own).
    pub fn running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The lines of its log (over every start) that contain `needle`.
    pub fn grep(&self, needle: &str) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(needle))
            .map(|l| format!("{}: {l}", self.name))
            .collect()
    }

    /// The last `lines` lines of its log.
    pub fn tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A NATS JetStream cluster of `nats-server` processes on loopback ports.
#[derive(Debug)]
pub struct NatsCluster {
    /// The nodes, `n1`, `n2`, …
    pub nodes: Vec<Proc>,
    /// Client ports, by node.
    pub ports: Vec<u16>,
    _dir: Scratch,
}

/// The nats-server binary.
pub fn nats_server() -> PathBuf {
    [
        "/usr/sbin/nats-server",
        "/usr/bin/nats-server",
        "/usr/local/bin/nats-server",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
    .unwrap_or_else(|| PathBuf::from("nats-server"))
}

impl NatsCluster {
    /// Starts `size` nodes with JetStream, routed to each other, and waits until JetStream
    /// answers through every node.
    pub async fn start(size: usize) -> NatsCluster {
        let dir = Scratch::new("sms-chaos-nats");
        let ports: Vec<u16> = (0..size).map(|_| free_port()).collect();
        let routes_ports: Vec<u16> = (0..size).map(|_| free_port()).collect();
        let routes = routes_ports
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        let nodes = (0..size)
            .map(|i| {
                let name = format!("n{}", i + 1);
                let store = dir.path().join(&name);
                std::fs::create_dir_all(&store).expect("store dir");
                let mut args: Vec<String> = vec![
                    "-a".into(),
                    "127.0.0.1".into(),
                    "-p".into(),
                    ports[i].to_string(),
                    "-js".into(),
                    "-sd".into(),
                    store.display().to_string(),
                    "--server_name".into(),
                    name.clone(),
                ];
                // One node is a plain server: a cluster of one never elects a JetStream leader.
                if size > 1 {
                    args.extend([
                        "--cluster_name".into(),
                        "chaos".into(),
                        "--cluster".into(),
                        format!("nats://127.0.0.1:{}", routes_ports[i]),
                        "--routes".into(),
                        routes.clone(),
                    ]);
                }
                let mut p = Proc::new(&name, nats_server(), args, Vec::new(), dir.path());
                p.start();
                p
            })
            .collect();
        let cluster = NatsCluster {
            nodes,
            ports,
            _dir: dir,
        };
        for port in &cluster.ports {
            cluster.wait_jetstream(*port, Duration::from_secs(60)).await;
        }
        cluster
    }

    /// `nats://127.0.0.1:p1,nats://127.0.0.1:p2,…` (what `SMS_NATS_URL` takes).
    pub fn urls(&self) -> String {
        self.ports
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    async fn wait_jetstream(&self, port: u16, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let ready = async {
                let client = async_nats::connect(format!("nats://127.0.0.1:{port}"))
                    .await
                    .ok()?;
                // The account info request: answered without an error once this node's
                // JetStream has joined the cluster's meta group.
                let answer = client.request("$JS.API.INFO", "".into()).await.ok()?;
                let text = String::from_utf8_lossy(&answer.payload).into_owned();
                (!text.contains("\"error\"")).then_some(())
            };
            if tokio::time::timeout(Duration::from_secs(3), ready)
                .await
                .ok()
                .flatten()
                .is_some()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "JetStream on :{port} not ready after {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The node that leads stream `name` now.
    pub async fn stream_leader(&self, name: &str) -> Option<usize> {
        let servers = sms_bus::parse_servers(&self.urls()).ok()?;
        let client = async_nats::connect(servers.as_slice()).await.ok()?;
        let js = async_nats::jetstream::new(client);
        let info = js.get_stream(name).await.ok()?.get_info().await.ok()?;
        let leader = info.cluster?.leader?;
        self.nodes.iter().position(|n| n.name == leader)
    }
}

/// A PostgreSQL cluster of its own, on a loopback port, with trust authentication for
/// `postgres`: what a fault test may restart.
#[derive(Debug)]
pub struct PgCluster {
    /// Its port.
    pub port: u16,
    bin: PathBuf,
    data: PathBuf,
    log: PathBuf,
    as_postgres: bool,
    dir: Scratch,
}

impl PgCluster {
    /// `initdb` and start. As root, the server runs as the `postgres` user (PostgreSQL refuses
    /// to run as root).
    pub async fn start() -> PgCluster {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|versions| {
                let mut dirs: Vec<PathBuf> = versions
                    .filter_map(Result::ok)
                    .map(|e| e.path().join("bin"))
                    .filter(|b| b.join("initdb").exists())
                    .collect();
                dirs.sort();
                dirs.pop()
            })
            .expect("PostgreSQL's server binaries (/usr/lib/postgresql/*/bin/initdb)");
        let dir = Scratch::new("sms-chaos-pg");
        let as_postgres = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        if as_postgres {
            let status = Command::new("chown")
                .args(["postgres:postgres", &dir.path().display().to_string()])
                .status()
                .expect("chown");
            assert!(status.success(), "chown of the PostgreSQL directory failed");
        }
        let data = dir.path().join("data");
        let pg = PgCluster {
            port: free_port(),
            bin,
            log: dir.path().join("postgres.log"),
            data,
            as_postgres,
            dir,
        };
        pg.run(
            "initdb",
            &[
                "-D",
                &pg.data.display().to_string(),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
            ],
        );
        pg.up();
        pg
    }

    /// `postgres://postgres@127.0.0.1:{port}/{database}`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let program = self.bin.join(tool);
        let output = if self.as_postgres {
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(&program)
                .args(args)
                .output()
        } else {
            Command::new(&program).args(args).output()
        }
        .unwrap_or_else(|e| panic!("cannot run {tool}: {e}"));
        assert!(
            output.status.success(),
            "{tool} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Starts the server and waits until it accepts connections.
    pub fn up(&self) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c max_connections=300",
            self.port,
            self.dir.path().display()
        );
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data.display().to_string(),
                "-l",
                &self.log.display().to_string(),
                "-o",
                &options,
                "-w",
                "start",
            ],
        );
    }

    /// Stops the server at once, as a crash would (`immediate`: recovery at the next start).
    pub fn crash(&self) {
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data.display().to_string(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let data = self.data.display().to_string();
        let args = ["-D", data.as_str(), "-m", "immediate", "-w", "stop"];
        let program = self.bin.join("pg_ctl");
        let _ = if self.as_postgres {
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(&program)
                .args(args)
                .output()
        } else {
            Command::new(&program).args(args).output()
        };
    }
}

/// Where the service binaries of this build are: next to the test binary's `deps` directory
/// (`target/debug`), or `SMS_BIN_DIR`.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SMS_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let deps = exe.parent().expect("deps directory");
    let dir = if deps.ends_with("deps") {
        deps.parent().expect("target profile directory")
    } else {
        deps
    };
    dir.to_path_buf()
}

/// A service binary of this build, checked to exist.
pub fn service_binary(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: build the service binaries first (cargo build --workspace --bins; \
         scripts/test does)",
        path.display()
    );
    path
}

/// Named processes.
#[derive(Debug, Default)]
pub struct Procs(pub HashMap<String, Proc>);

impl Procs {
    /// The process `name`.
    pub fn get(&mut self, name: &str) -> &mut Proc {
        self.0
            .get_mut(name)
            .unwrap_or_else(|| panic!("no process {name}"))
    }

    /// The lines of every process's log that contain `needle`, process by process.
    pub fn grep(&self, needle: &str) -> Vec<String> {
        let mut names: Vec<&String> = self.0.keys().collect();
        names.sort();
        names
            .into_iter()
            .flat_map(|n| self.0[n].grep(needle))
            .collect()
    }

    /// The last lines of every process's log.
    pub fn tails(&self, lines: usize) -> String {
        let mut names: Vec<&String> = self.0.keys().collect();
        names.sort();
        names
            .into_iter()
            .map(|n| format!("--- {n}\n{}", self.0[n].tail(lines)))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Waits until `http://{addr}/readyz` answers 200.
pub async fn wait_ready(addr: &str, timeout: Duration) -> bool {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let ok = http
            .get(format!("http://{addr}/readyz"))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ok {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}
