//! A network namespace of the test's own, to prove what a sandbox can and cannot reach
//! without sending a packet anywhere else: the test's addresses (link-local, private,
//! shared, and one that stands for the internet) sit on its loopback interface, with
//! listeners that count who reached them, and `envplane serve` runs inside it too, so
//! that its sandboxes' traffic leaves through this namespace and nowhere else.

use std::io::Write;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use nix::sched::CloneFlags;

pub struct TestNetwork {
    name: String,
    pub path: PathBuf,
}

/// Connections a listener accepted.
#[derive(Clone, Default)]
pub struct Hits(Arc<AtomicUsize>);

impl Hits {
    pub fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

fn ip(args: &[&str]) {
    let status = Command::new("ip").args(args).status().expect("run ip");
    assert!(status.success(), "ip {args:?} failed");
}

impl TestNetwork {
    /// A namespace with `addresses` (`a.b.c.d/32`) on its loopback, or `None`, said
    /// aloud, where this machine cannot make sandbox networks (not root, no slirp4netns).
    pub fn create(addresses: &[&str]) -> Option<Self> {
        if let envplane_local::Isolation::Unavailable(why) = envplane_local::Isolation::detect() {
            eprintln!("SKIPPED: sandboxes cannot be made on this machine: {why}");
            return None;
        }
        let name = format!("envplane-test-{}", ulid_like());
        ip(&["netns", "add", &name]);
        let network = TestNetwork {
            path: PathBuf::from("/run/netns").join(&name),
            name,
        };
        let n = network.name.as_str();
        ip(&["-n", n, "link", "set", "lo", "up"]);
        // On the namespace's loopback (no dummy interface module needed): slirp4netns in
        // here connects to these, and has no route to anything else.
        for address in addresses {
            ip(&["-n", n, "addr", "add", address, "dev", "lo"]);
        }
        Some(network)
    }

    /// An HTTP listener on `address:port` inside the namespace, answering `reached`.
    pub fn listen(&self, address: &str, port: u16) -> Hits {
        let hits = Hits::default();
        let (bound, ready) = std::sync::mpsc::channel();
        let namespace = std::fs::File::open(&self.path).expect("the test namespace");
        let (address, counter) = (address.to_string(), hits.clone());
        std::thread::spawn(move || {
            nix::sched::setns(&namespace, CloneFlags::CLONE_NEWNET).expect("enter the namespace");
            let listener = TcpListener::bind((address.as_str(), port)).expect("bind");
            bound.send(()).unwrap();
            for mut stream in listener.incoming().map_while(Result::ok) {
                counter.0.fetch_add(1, Ordering::SeqCst);
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 8\r\nconnection: close\r\n\r\nreached\n",
                );
            }
        });
        ready.recv().expect("the listener is bound");
        hits
    }

    /// `command` run inside the namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--net={}", self.path.display()))
            .arg(program);
        command
    }
}

impl Drop for TestNetwork {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .status();
    }
}

/// Unique enough for a namespace name: the process and a counter.
fn ulid_like() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    )
}
