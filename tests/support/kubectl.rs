//! The real kubectl (Debian's `kubectl`, installed by scripts/setup) against a
//! [`TestServer`], with a private kubeconfig, discovery cache and HOME per instance.

use std::path::PathBuf;
use std::process::{Command, Output};

use super::apiserver_support::TestServer;

pub struct Kubectl {
    pub kubeconfig: PathBuf,
    pub dir: tempfile::TempDir,
}

#[allow(dead_code)]
impl Kubectl {
    pub fn new(server: &TestServer) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig.yaml");
        moor::cli::server::write_kubeconfig(&kubeconfig, &server.url).unwrap();
        Self { kubeconfig, dir }
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("kubectl");
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            // A private cache dir: discovery from another test server must not leak in.
            .env("KUBECACHEDIR", self.dir.path().join("cache"))
            .env("HOME", self.dir.path());
        cmd
    }

    /// Run kubectl off the async runtime's worker threads.
    pub async fn run(&self, args: &[&str]) -> Output {
        let mut cmd = self.command(args);
        tokio::task::spawn_blocking(move || {
            cmd.output()
                .expect("run kubectl (scripts/setup installs it)")
        })
        .await
        .unwrap()
    }

    /// Run a command that must succeed; returns its stdout.
    pub async fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        assert!(
            out.status.success(),
            "kubectl {args:?} failed:\n{}",
            text(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Run a command that must fail; returns its stderr.
    pub async fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        assert!(
            !out.status.success(),
            "kubectl {args:?} succeeded:\n{}",
            text(&out)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

/// A command's status and output, for failure messages.
pub fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
