//! The runtime shape: one single-threaded tokio runtime per worker, as Envoy and Pingora run
//! one event loop per core.
//!
//! Worker 0 is the main thread's runtime: it runs the command itself (start-up, the accept
//! loops, health checks, the admin listener, reloads) and serves its share of connections.
//! Workers 1.. run on threads of their own (`kprox-worker`) for the life of the process. The
//! listeners hand each new connection to the next worker in turn (`kprox_listener::Workers`),
//! and a connection's requests go out on HTTP/2 connections opened by the same worker
//! (`kprox_upstream::worker`), so a request never crosses threads. Measured against one
//! work-stealing runtime on the same machine in the same run (benches/run): see the README's
//! performance section.

use std::sync::Arc;

use kprox_listener::Workers;
use tokio::runtime::{Builder, Runtime};

/// The main thread's runtime and the handles of every worker's (the main one first).
pub struct Runtimes {
    pub main: Runtime,
    pub workers: Arc<Workers>,
}

/// `threads` workers; `0` is one per CPU kprox may use (cgroup quotas included).
pub fn start(threads: usize) -> std::io::Result<Runtimes> {
    let threads = match threads {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        n => n,
    };
    kprox_upstream::worker::set_count(threads);
    kprox_upstream::worker::enter(0);
    let main = single_thread()?;
    let mut handles = vec![main.handle().clone()];
    for index in 1..threads {
        let (sender, receiver) = std::sync::mpsc::sync_channel(1);
        std::thread::Builder::new()
            // Named so that top -H, perf sched and /proc tell kprox's threads from a client's.
            .name("kprox-worker".to_owned())
            .spawn(move || {
                kprox_upstream::worker::enter(index);
                match single_thread() {
                    Ok(runtime) => {
                        let _ = sender.send(Ok(runtime.handle().clone()));
                        // Serves what it is handed until the process exits.
                        runtime.block_on(std::future::pending::<()>());
                    }
                    Err(error) => {
                        let _ = sender.send(Err(error));
                    }
                }
            })?;
        let handle = receiver
            .recv()
            .map_err(|_| std::io::Error::other("a worker thread ended while starting"))??;
        handles.push(handle);
    }
    Ok(Runtimes {
        main,
        workers: Arc::new(Workers::new(handles)),
    })
}

fn single_thread() -> std::io::Result<Runtime> {
    Builder::new_current_thread().enable_all().build()
}
