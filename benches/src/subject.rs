//! The proxies under test, run as real processes, and what /proc says about them.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A proxy process serving plain HTTP on `address`.
#[derive(Debug)]
pub struct Subject {
    pub name: &'static str,
    pub address: SocketAddr,
    child: Child,
    /// From spawning the process to its first answered request.
    pub startup: Duration,
    /// In its own process group, stopped with SIGTERM to the group: a profiler writing its
    /// output, or nginx ending its workers.
    stop_group: bool,
    /// Its children are part of it (nginx's workers): memory and CPU are summed over them.
    with_children: bool,
    /// The program itself, when it runs under a wrapper.
    program: Option<std::path::PathBuf>,
}

/// How kprox is started beyond its binary and arguments.
#[derive(Clone, Debug, Default)]
pub struct Launch {
    /// Extra environment, e.g. `KPROX_RUNTIME__WORKER_THREADS=1` for a sweep.
    pub env: Vec<(String, String)>,
    /// A command kprox runs under, e.g. `heaptrack -o /tmp/kprox`. Its process is the one
    /// weighed, so memory and CPU figures then include the wrapper's.
    pub wrap: Vec<String>,
}

impl Subject {
    /// `kprox --port 0` against `kubeconfig`, with its admin listener off. The idle-watch
    /// workload holds 10,000 client connections; kprox's default cap is 1,000 (kubectl proxy
    /// has none), so the cap is raised.
    pub fn kprox(binary: &Path, kubeconfig: &Path, launch: &Launch) -> anyhow::Result<Self> {
        Self::kprox_with(binary, kubeconfig, &[], launch)
    }

    /// `kprox` as [`Subject::kprox`], with more arguments.
    pub fn kprox_with(
        binary: &Path,
        kubeconfig: &Path,
        extra: &[&str],
        launch: &Launch,
    ) -> anyhow::Result<Self> {
        let mut command = match launch.wrap.split_first() {
            Some((wrapper, wrapper_args)) => {
                let mut command = Command::new(wrapper);
                command.args(wrapper_args).arg(binary).process_group(0);
                command
            }
            None => Command::new(binary),
        };
        command.args(["--port", "0", "--admin-address", "off", "--kubeconfig"]);
        command.arg(kubeconfig).args(extra);
        command.env("KPROX_LISTEN__MAX_CONNECTIONS", "20000");
        command.envs(launch.env.iter().map(|(k, v)| (k, v)));
        let mut subject = Self::spawn("kprox", command)?;
        if !launch.wrap.is_empty() {
            subject.stop_group = true;
            subject.program = Some(binary.canonicalize()?);
        }
        Ok(subject)
    }

    /// nginx as a plain reverse proxy, the way a platform team would put it in front of an
    /// apiserver: TLS verified against the cluster CA, the token added, a keep-alive pool of
    /// upstream connections, one worker per core, streaming both ways (no buffering to disk,
    /// which a watch could not survive). Its files go in `dir`.
    pub fn nginx(
        binary: &Path,
        dir: &Path,
        upstream: SocketAddr,
        ca_pem: &str,
        token: &str,
    ) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let dir_text = dir.display();
        std::fs::write(dir.join("ca.pem"), ca_pem)?;
        let config = format!(
            r#"worker_processes 2;
daemon off;
pid {dir_text}/nginx.pid;
error_log {dir_text}/error.log warn;
events {{ worker_connections 20000; }}
http {{
    access_log off;
    client_body_temp_path {dir_text}/body;
    proxy_temp_path {dir_text}/proxy;
    fastcgi_temp_path {dir_text}/fastcgi;
    uwsgi_temp_path {dir_text}/uwsgi;
    scgi_temp_path {dir_text}/scgi;
    upstream apiserver {{
        server {upstream};
        keepalive 128;
        keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{port};
        # nginx closes a client connection after 1,000 requests by default; the load
        # generator keeps its connections, as kubectl and client-go do.
        keepalive_requests 1000000;
        keepalive_timeout 300s;
        client_max_body_size 3m;
        location / {{
            proxy_pass https://apiserver;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Authorization "Bearer {token}";
            proxy_ssl_verify on;
            proxy_ssl_trusted_certificate {dir_text}/ca.pem;
            proxy_ssl_name localhost;
            proxy_ssl_server_name on;
            proxy_ssl_session_reuse on;
            proxy_buffering off;
            proxy_request_buffering off;
            proxy_buffer_size 64k;
            proxy_buffers 8 64k;
        }}
    }}
}}
"#
        );
        let path = dir.join("nginx.conf");
        std::fs::write(&path, config)?;
        let started = Instant::now();
        let mut command = Command::new(binary);
        command
            .arg("-c")
            .arg(&path)
            .args(["-e", &format!("{dir_text}/error.log")])
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = command
            .spawn()
            .map_err(|e| anyhow::anyhow!("nginx did not start: {e}"))?;
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        let mut subject = Self {
            name: "nginx",
            address,
            child,
            startup: Duration::ZERO,
            stop_group: true,
            with_children: true,
            program: None,
        };
        subject.startup = wait_for_first_answer(address, started).map_err(|e| {
            let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
            anyhow::anyhow!("{e}; nginx's error log: {log}")
        })?;
        Ok(subject)
    }

    /// HAProxy, the strongest proxy a user could put here instead: one process with two
    /// frontends — HTTP (the token added, HTTP/2 to the apiserver over TLS verified against
    /// the cluster CA, as client-go talks to it) and TCP (TLS untouched end to end, the peer of
    /// kprox's pass-through). Returns the subject (its HTTP address) and the TCP address.
    pub fn haproxy(
        binary: &Path,
        dir: &Path,
        upstream: SocketAddr,
        ca_pem: &str,
        token: &str,
    ) -> anyhow::Result<(Self, SocketAddr)> {
        let free = || -> anyhow::Result<u16> {
            Ok(std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port())
        };
        let (http_port, tcp_port) = (free()?, free()?);
        let dir_text = dir.display();
        std::fs::write(dir.join("ca.pem"), ca_pem)?;
        let config = format!(
            r#"global
    maxconn 4096
    nbthread 2
    tune.ssl.default-dh-param 2048
defaults
    timeout connect 5s
    timeout client 300s
    timeout server 300s
    timeout tunnel 1h
    # The load generator keeps its connections, as kubectl and client-go do.
    timeout http-keep-alive 300s
frontend http
    mode http
    bind 127.0.0.1:{http_port}
    http-request set-header Authorization "Bearer {token}"
    default_backend apiserver
backend apiserver
    mode http
    http-reuse always
    server api {upstream} ssl verify required ca-file {dir_text}/ca.pem sni str(localhost) verifyhost localhost alpn h2
frontend tcp
    mode tcp
    bind 127.0.0.1:{tcp_port}
    default_backend apiserver_tcp
backend apiserver_tcp
    mode tcp
    server api {upstream}
"#
        );
        let path = dir.join("haproxy.cfg");
        std::fs::write(&path, config)?;
        let started = Instant::now();
        let mut command = Command::new(binary);
        command
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("haproxy.log"))?);
        let child = command
            .spawn()
            .map_err(|e| anyhow::anyhow!("haproxy did not start: {e}"))?;
        let address = SocketAddr::from(([127, 0, 0, 1], http_port));
        let mut subject = Self {
            name: "haproxy",
            address,
            child,
            startup: Duration::ZERO,
            stop_group: true,
            with_children: false,
            program: None,
        };
        subject.startup = wait_for_first_answer(address, started).map_err(|e| {
            let log = std::fs::read_to_string(dir.join("haproxy.log")).unwrap_or_default();
            anyhow::anyhow!("{e}; haproxy said: {log}")
        })?;
        Ok((subject, SocketAddr::from(([127, 0, 0, 1], tcp_port))))
    }

    /// `kubectl proxy --port 0` against `kubeconfig`.
    pub fn kubectl_proxy(binary: &Path, kubeconfig: &Path) -> anyhow::Result<Self> {
        let mut command = Command::new(binary);
        command.args(["proxy", "--port", "0", "--kubeconfig"]);
        command.arg(kubeconfig);
        Self::spawn("kubectl proxy", command)
    }

    fn spawn(name: &'static str, mut command: Command) -> anyhow::Result<Self> {
        let started = Instant::now();
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| anyhow::anyhow!("{name} did not start: {e}"))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("{name}: no stdout"))?;
        // A wrapper (a profiler) may print a few lines of its own first.
        let mut lines = BufReader::new(stdout).lines();
        let mut printed = Vec::new();
        let address = loop {
            let line = lines.next().transpose()?;
            if let Some(address) = line
                .as_deref()
                .and_then(|l| l.trim().strip_prefix("Starting to serve on "))
            {
                break address.to_owned();
            }
            let ended = line.is_none();
            printed.extend(line);
            if ended || printed.len() >= 20 {
                let _ = child.kill();
                anyhow::bail!("{name} printed {printed:?} instead of its address");
            }
        };
        let address: SocketAddr = address.parse()?;
        let mut subject = Self {
            name,
            address,
            child,
            startup: Duration::ZERO,
            stop_group: false,
            with_children: false,
            program: None,
        };
        subject.startup = wait_for_first_answer(address, started)?;
        Ok(subject)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the process with SIGTERM, as systemd or the kubelet would, and waits up to
    /// `grace` for it to exit; its exit status. A PGO-instrumented kprox writes its profile
    /// as it exits, so it must not be killed.
    pub fn terminate(mut self, grace: Duration) -> anyhow::Result<std::process::ExitStatus> {
        let pid = self.pid().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + grace;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                anyhow::bail!("{} did not exit within {grace:?} of SIGTERM", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process and, for nginx, its workers.
    fn pids(&self) -> Vec<u32> {
        let mut pids = vec![self.pid()];
        if self.with_children {
            let children =
                std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", self.pid()))
                    .unwrap_or_default();
            pids.extend(
                children
                    .split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
        pids
    }

    /// CPU seconds (user + system) the process (and its workers) has used so far.
    pub fn cpu_seconds(&self) -> anyhow::Result<f64> {
        self.pids().into_iter().map(cpu_seconds).sum()
    }

    /// Context switches (voluntary and not) of every thread of the process (and its workers)
    /// so far: how often it went to sleep or was pushed off a core.
    pub fn context_switches(&self) -> anyhow::Result<u64> {
        self.pids().into_iter().map(context_switches).sum()
    }

    /// Resident memory now and its peak (VmRSS, VmHWM), in KiB; summed over nginx's workers.
    pub fn memory_kib(&self) -> anyhow::Result<(u64, u64)> {
        self.pids()
            .into_iter()
            .map(memory_kib)
            .try_fold((0, 0), |(rss, hwm), m| m.map(|(r, h)| (rss + r, hwm + h)))
    }
}

impl Drop for Subject {
    fn drop(&mut self) {
        if self.stop_group {
            // A profiler's own helpers must outlive the program to write their output: signal
            // the program when it can be told apart, the whole group otherwise (nginx).
            let targets = match &self.program {
                Some(program) => processes_in_group(self.pid(), program),
                None => Vec::new(),
            };
            let targets = if targets.is_empty() {
                vec![format!("-{}", self.pid())]
            } else {
                targets.iter().map(u32::to_string).collect()
            };
            let _ = Command::new("kill")
                .args(["-TERM", "--"])
                .args(&targets)
                .status();
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The processes in process group `group` running `program`.
fn processes_in_group(group: u32, program: &Path) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let in_group = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    let after = stat
                        .rsplit_once(')')?
                        .1
                        .split_whitespace()
                        .nth(2)?
                        .to_owned();
                    after.parse::<u32>().ok()
                })
                == Some(group);
            in_group
                && std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| exe == program)
        })
        .collect()
}

/// Polls `GET /version` through the proxy until it answers 200.
fn wait_for_first_answer(address: SocketAddr, started: Instant) -> anyhow::Result<Duration> {
    use std::io::{Read, Write};
    let deadline = started + Duration::from_secs(20);
    loop {
        if let Ok(mut stream) = std::net::TcpStream::connect(address) {
            let _ = stream.write_all(
                b"GET /version HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
            );
            let mut answer = Vec::new();
            let _ = stream.read_to_end(&mut answer);
            if answer.starts_with(b"HTTP/1.1 200") {
                return Ok(started.elapsed());
            }
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the proxy on {address} never answered /version"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// CPU seconds (user + system) used by process `pid`.
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| anyhow::anyhow!("odd /proc/{pid}/stat"))?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat; here 11 and 12 (0-based) after the name.
    let ticks: u64 = fields
        .get(11)
        .zip(fields.get(12))
        .and_then(|(u, s)| Some(u.parse::<u64>().ok()? + s.parse::<u64>().ok()?))
        .ok_or_else(|| anyhow::anyhow!("no CPU times in /proc/{pid}/stat"))?;
    Ok(ticks as f64 / clock_ticks_per_second())
}

fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8_lossy(&out.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// Context switches of every thread of process `pid` so far.
pub fn context_switches(pid: u32) -> anyhow::Result<u64> {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        // A thread that ended meanwhile has nothing to add.
        let Ok(status) = std::fs::read_to_string(task?.path().join("status")) else {
            continue;
        };
        total += status
            .lines()
            .filter_map(|line| {
                line.strip_prefix("voluntary_ctxt_switches:")
                    .or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"))
            })
            .filter_map(|count| count.trim().parse::<u64>().ok())
            .sum::<u64>();
    }
    Ok(total)
}

/// (VmRSS, VmHWM) of process `pid` in KiB.
pub fn memory_kib(pid: u32) -> anyhow::Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> anyhow::Result<u64> {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("no {name} in /proc/{pid}/status"))
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

/// Open file descriptors of process `pid`.
pub fn open_fds(pid: u32) -> anyhow::Result<usize> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))?.count())
}
