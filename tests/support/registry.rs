//! A private OCI registry for pull tests: Debian's `docker-registry` (distribution 2.x)
//! serving plain HTTP on a free loopback port, its storage in a temp dir, optionally with
//! htpasswd (bcrypt) basic auth. Killed when dropped.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RegistryInstance {
    child: Option<Child>,
    dir: tempfile::TempDir,
    port: u16,
}

impl RegistryInstance {
    /// An open registry (anonymous pulls and pushes).
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// A registry wanting `username`/`password` for everything.
    pub fn start_with_basic_auth(username: &str, password: &str) -> Self {
        Self::start_with(Some((username, password)))
    }

    fn start_with(auth: Option<(&str, &str)>) -> Self {
        let dir = tempfile::tempdir().expect("temp dir for the registry");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let root = dir.path();
        let mut config = format!(
            "version: 0.1\n\
             log:\n  level: warn\n\
             storage:\n  filesystem:\n    rootdirectory: {root}/data\n  delete:\n    enabled: true\n\
             http:\n  addr: 127.0.0.1:{port}\n",
            root = root.display()
        );
        if let Some((username, password)) = auth {
            let hash = bcrypt::hash(password, 4).expect("bcrypt");
            std::fs::write(root.join("htpasswd"), format!("{username}:{hash}\n"))
                .expect("htpasswd");
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: moor-test\n    path: {}/htpasswd\n",
                root.display()
            ));
        }
        std::fs::write(root.join("config.yml"), config).expect("registry config");
        let log = std::fs::File::create(root.join("registry.log")).expect("registry log");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(root.join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run docker-registry (Debian's package): {e}"));
        let instance = RegistryInstance {
            child: Some(child),
            dir,
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !instance.answers() {
            if Instant::now() > deadline {
                panic!(
                    "docker-registry did not come up; log:\n{}",
                    std::fs::read_to_string(instance.dir.path().join("registry.log"))
                        .unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        instance
    }

    /// `127.0.0.1:PORT`, as image names spell the registry.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Whether `GET /v2/` gets any HTTP answer (401 counts: auth is on).
    fn answers(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let request = format!(
            "GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
            self.port
        );
        if stream.write_all(request.as_bytes()).is_err() {
            return false;
        }
        let mut reply = String::new();
        let _ = stream.read_to_string(&mut reply);
        reply.starts_with("HTTP/1.1 200") || reply.starts_with("HTTP/1.1 401")
    }
}

impl Drop for RegistryInstance {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
