//! A throwaway PostgreSQL server per test (`scripts/pg`): started in a temporary directory on a
//! free loopback port, stopped and removed when the test ends, whichever way it ends short of a
//! SIGKILL (then `scripts/test` sweeps it). Each test has its own server, so tests that stop
//! their server mid-run, change its roles or its schema cannot disturb one another.

use std::path::PathBuf;
use std::process::Command;

/// Where every test's server lives: `scripts/test` stops what is left under this prefix.
pub const DIR_PREFIX: &str = "ccb-pg-";

pub struct Pg {
    pub dir: PathBuf,
    /// `postgresql://postgres:PASSWORD@127.0.0.1:PORT/postgres`
    pub admin_url: String,
    pub password: String,
    pub port: u16,
}

fn script(args: &[&str]) -> String {
    let out = Command::new(crate::support::repo_root().join("scripts/pg")).args(args).output().unwrap();
    assert!(out.status.success(), "scripts/pg {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

impl Pg {
    pub fn start() -> Pg {
        let dir = std::env::temp_dir().join(format!("{DIR_PREFIX}{}", uuid_like()));
        let url = script(&["start", dir.to_str().unwrap()]);
        let rest = url.strip_prefix("postgresql://postgres:").unwrap();
        let (password, hostport) = rest.split_once('@').unwrap();
        let port = hostport.split_once(':').unwrap().1.split_once('/').unwrap().0.parse().unwrap();
        Pg { dir, admin_url: url.clone(), password: password.to_string(), port }
    }

    /// A new database on this server, and its URL (as the superuser).
    pub fn database(&self, name: &str) -> String {
        self.admin().batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
        self.url_of(name)
    }

    pub fn url_of(&self, db: &str) -> String {
        format!("postgresql://postgres:{}@127.0.0.1:{}/{db}?sslmode=disable", self.password, self.port)
    }

    pub fn admin(&self) -> postgres::Client {
        postgres::Client::connect(&format!("{}?sslmode=disable", self.admin_url), postgres::NoTls).unwrap()
    }

    pub fn client(&self, db: &str) -> postgres::Client {
        postgres::Client::connect(&self.url_of(db), postgres::NoTls).unwrap()
    }

    /// Stop the server, keeping its data; [`Pg::resume`] starts it again on the same port.
    pub fn pause(&self) {
        script(&["pause", self.dir.to_str().unwrap()]);
    }

    pub fn resume(&self) {
        script(&["resume", self.dir.to_str().unwrap()]);
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        let _ = Command::new(crate::support::repo_root().join("scripts/pg"))
            .args(["stop", self.dir.to_str().unwrap()])
            .output();
    }
}

fn uuid_like() -> String {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{:x}-{}", t, std::process::id())
}
