//! Test support: every test that touches the kernel runs inside a fresh network namespace
//! (`ip netns add kcoretest-<random>`), on a thread that entered it with `setns`, with its
//! own current-thread tokio runtime; the namespace is deleted afterwards. The host's
//! interfaces, routes and nftables are never touched.

#![allow(dead_code)]

use std::fs::File;
use std::future::Future;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::Command;

use kcore_netstack::tool::{self, Tool};
use nix::sched::{CloneFlags, setns};

/// The path of `tool`; a missing tool fails the test, naming the Debian package.
pub fn require(tool: Tool) -> PathBuf {
    match tool::find(tool) {
        Ok(path) => path,
        Err(e) => panic!("this test needs `{}`: {e}", tool.name),
    }
}

/// A network namespace deleted on drop (which also stops anything left running in it
/// from holding on to the name).
#[derive(Debug)]
pub struct NetNs {
    pub name: String,
}

impl NetNs {
    pub fn create() -> NetNs {
        let ip = require(tool::IP);
        let rand = getrandom::u32().expect("getrandom");
        let name = format!("kcoretest-{rand:08x}");
        let out = Command::new(&ip)
            .args(["netns", "add", &name])
            .output()
            .expect("run ip netns add");
        assert!(
            out.status.success(),
            "ip netns add {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        NetNs { name }
    }
}

/// Run `tool args...` inside the namespace `ns` (`ip netns exec`) and return its stdout;
/// a failure fails the test.
pub fn exec_in(ns: &str, tool: Tool, args: &[&str]) -> String {
    let ip = require(tool::IP);
    let program = require(tool);
    let out = Command::new(&ip)
        .args(["netns", "exec", ns])
        .arg(&program)
        .args(args)
        .output()
        .expect("run ip netns exec");
    assert!(
        out.status.success(),
        "{} {args:?} in {ns}: {}",
        tool.name,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let Ok(ip) = tool::find(tool::IP) else {
            return;
        };
        match Command::new(ip)
            .args(["netns", "delete", &self.name])
            .output()
        {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!(
                "ip netns delete {}: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => eprintln!("ip netns delete {}: {e}", self.name),
        }
    }
}

/// Run `body` on a thread inside a fresh network namespace, with a current-thread tokio
/// runtime; `body` gets the namespace's name. Panics in the body fail the test after the
/// namespace is deleted.
pub fn in_netns<F, Fut>(body: F)
where
    F: FnOnce(String) -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let ns = NetNs::create();
    let name = ns.name.clone();
    let result = std::thread::spawn(move || {
        let path = format!("/run/netns/{name}");
        let file = File::open(&path).expect("open the netns file");
        setns(&file, CloneFlags::CLONE_NEWNET).expect("setns into the test namespace");
        // Prove this thread is in the test namespace before touching anything.
        let ours = std::fs::metadata("/proc/thread-self/ns/net").expect("stat own netns");
        let target = file.metadata().expect("stat netns file");
        assert_eq!(
            (ours.dev(), ours.ino()),
            (target.dev(), target.ino()),
            "setns did not take effect; refusing to run against the host"
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        rt.block_on(body(name));
    })
    .join();
    drop(ns);
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}
