//! A pod's network, made here: a network namespace of the test's own with a non-loopback
//! address (a pod IP) on its `lo`, a fake apiserver inside it, and kprox and curl run inside it
//! with `nsenter`. Nothing leaves the namespace; needs root (the test machines run as root) and
//! fails loudly without it.

use std::io::{BufRead as _, BufReader};
use std::os::fd::AsFd as _;
use std::process::{Child, Command, Output, Stdio};

use super::{Cluster, Kprox};

/// A network namespace holding `ip`, alive while this value is.
pub struct PodNetwork {
    pub ip: String,
    holder: Child,
    /// Ends the fake apiserver's runtime, which runs on a thread inside the namespace.
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl PodNetwork {
    /// Creates the namespace with `lo` up and `ip` on it.
    pub fn create(ip: &str) -> Self {
        let script = format!(
            "ip link set lo up && ip addr add {ip}/32 dev lo && echo ready && exec sleep 600"
        );
        let mut holder = Command::new("unshare")
            .args(["--net", "--", "sh", "-c", &script])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("unshare (util-linux) must be installed");
        let stdout = holder.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("read");
        assert_eq!(
            line.trim(),
            "ready",
            "cannot make a network namespace with {ip} (the tests run as root)"
        );
        Self {
            ip: ip.to_owned(),
            holder,
            stop: None,
        }
    }

    fn namespace_path(&self) -> String {
        format!("/proc/{}/ns/net", self.holder.id())
    }

    /// `nsenter --net=... PROGRAM`: the program runs inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--net={}", self.namespace_path()))
            .arg("--")
            .arg(program);
        command
    }

    /// A fake apiserver (and its kubeconfig) listening inside the namespace on 127.0.0.1, as
    /// the apiserver a sidecar reaches. Its runtime runs on a thread that joined the namespace,
    /// so every socket it opens is there.
    pub fn cluster(&mut self) -> Cluster {
        let namespace = std::fs::File::open(self.namespace_path()).expect("open the namespace");
        let (cluster_tx, cluster_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            rustix::thread::move_into_link_name_space(
                namespace.as_fd(),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )
            .expect("setns into the pod network (the tests run as root)");
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let _ = cluster_tx.send(Cluster::start().await);
                let _ = stopped.await;
            });
        });
        self.stop = Some(stop);
        cluster_rx
            .recv()
            .expect("the fake apiserver starts in the namespace")
    }

    /// Starts kprox inside the namespace with `args` (as `Kprox::start` does outside).
    pub fn kprox(&self, args: &[&str]) -> Kprox {
        let mut all = vec!["--port", "0", "--admin-address", "127.0.0.1:0"];
        all.extend_from_slice(args);
        let mut command = self.command(env!("CARGO_BIN_EXE_kprox"));
        command.args(&all);
        Kprox::spawn(command)
    }

    /// Runs curl inside the namespace.
    pub fn curl(&self, args: &[&str]) -> Output {
        self.command("curl")
            .args(args)
            .output()
            .expect("curl must be installed")
    }
}

impl Drop for PodNetwork {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}
