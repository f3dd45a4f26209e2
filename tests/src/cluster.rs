//! A throwaway Postgres cluster for tests that need server settings the shared one must not have
//! (`wal_level = replica`, password authentication, TLS): initdb in a temporary directory, a free port,
//! trust for the superuser `postgres` (run as the OS user `postgres` when the tests run as root); stopped
//! (immediate) and deleted on drop.

use crate::{unique_name, wait_until, Services};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A running cluster of its own.
#[derive(Debug)]
pub struct Cluster {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Its directory (data directory in `data/`, socket, log and any extra files).
    pub dir: PathBuf,
    pg_bin: PathBuf,
    as_postgres: bool,
}

/// How to set the cluster up.
#[derive(Debug, Default)]
pub struct Setup<'a> {
    /// Lines appended to postgresql.conf.
    pub conf: &'a str,
    /// The whole pg_hba.conf (default: trust for everyone on 127.0.0.1 and the socket).
    pub hba: Option<&'a str>,
    /// Files copied into the data directory (owned by the server user, mode 0600), e.g. TLS key and cert.
    pub files: &'a [(&'a str, &'a Path)],
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a free port");
    listener.local_addr().unwrap().port()
}

impl Cluster {
    /// initdb, configure, start, and wait (with a deadline) until it accepts sessions.
    pub async fn start(setup: Setup<'_>) -> Cluster {
        let pg_bin = PathBuf::from(Services::from_env().pg_bin);
        // Postgres refuses to run as root: then the cluster belongs to the user `postgres`.
        let as_postgres = run(Command::new("id").arg("-u")).trim() == "0";
        let dir = std::env::temp_dir().join(unique_name("outboxd_pg"));
        std::fs::create_dir_all(&dir).unwrap();
        let cluster = Cluster {
            port: free_port(),
            dir,
            pg_bin,
            as_postgres,
        };
        cluster.chown(&cluster.dir);
        let data = cluster.data();
        run(cluster
            .command("initdb")
            .args(["-D", path(&data), "-U", "postgres", "--auth=trust", "-N"]));
        let conf = format!(
            "listen_addresses = '127.0.0.1'\nport = {}\nunix_socket_directories = '{}'\nfsync = off\n\
             max_connections = 30\nshared_buffers = 16MB\n{}\n",
            cluster.port,
            cluster.dir.display(),
            setup.conf
        );
        append(&data.join("postgresql.conf"), &conf);
        let hba = setup
            .hba
            .unwrap_or("local all all trust\nhost all all 127.0.0.1/32 trust\n");
        std::fs::write(data.join("pg_hba.conf"), hba).unwrap();
        for (name, source) in setup.files {
            let target = data.join(name);
            std::fs::copy(source, &target).unwrap();
            run(Command::new("chmod").arg("600").arg(&target));
            cluster.chown(&target);
        }
        let log = cluster.dir.join("postgres.log");
        let started = cluster
            .command("pg_ctl")
            .args(["-D", path(&data), "-l", path(&log), "-w", "-t", "60", "start"])
            .output()
            .expect("running pg_ctl");
        assert!(
            started.status.success(),
            "the throwaway cluster did not start: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        let url = cluster.url("postgres");
        wait_until(
            "the throwaway cluster accepts sessions",
            Duration::from_secs(60),
            || async {
                tokio_postgres::connect(&url, tokio_postgres::NoTls)
                    .await
                    .ok()
                    .map(|_| ())
            },
        )
        .await;
        cluster
    }

    /// Restarts the server with that shutdown mode (`"fast"`: sessions are terminated, a checkpoint is
    /// written; `"immediate"`: no checkpoint, crash recovery at start) and waits until it accepts sessions.
    pub async fn restart(&self, mode: &str) {
        let data = self.data();
        let log = self.dir.join("postgres.log");
        let out = self
            .command("pg_ctl")
            .args([
                "-D",
                path(&data),
                "-l",
                path(&log),
                "-m",
                mode,
                "-w",
                "-t",
                "60",
                "restart",
            ])
            .output()
            .expect("running pg_ctl restart");
        assert!(
            out.status.success(),
            "pg_ctl restart -m {mode} failed: {}{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        let url = self.url("postgres");
        wait_until(
            "the restarted cluster accepts sessions",
            Duration::from_secs(60),
            || async {
                tokio_postgres::connect(&url, tokio_postgres::NoTls)
                    .await
                    .ok()
                    .map(|_| ())
            },
        )
        .await;
    }

    /// A URL for `user` on database `postgres` (no password, no TLS parameters).
    pub fn url(&self, user: &str) -> String {
        format!("postgres://{user}@127.0.0.1:{}/postgres", self.port)
    }

    /// Runs SQL as the superuser.
    pub async fn execute(&self, sql: &str) {
        let (client, conn) = tokio_postgres::connect(&self.url("postgres"), tokio_postgres::NoTls)
            .await
            .expect("connecting to the throwaway cluster");
        let task = tokio::spawn(conn);
        client
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        drop(client);
        let _ = task.await;
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn command(&self, tool: &str) -> Command {
        let tool = self.pg_bin.join(tool);
        if self.as_postgres {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(tool);
            cmd
        } else {
            Command::new(tool)
        }
    }

    fn chown(&self, target: &Path) {
        if self.as_postgres {
            run(Command::new("chown").arg("postgres:postgres").arg(target));
        }
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

fn append(file: &Path, text: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(file).unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .args([
                "-D",
                path(&self.data()),
                "-m",
                "immediate",
                "-w",
                "-t",
                "30",
                "stop",
            ])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A CA and a server certificate it signed, for `DNS:localhost` only; plus an unrelated CA. Made with the
/// openssl command line in a directory of their own.
#[derive(Debug)]
pub struct Certs {
    pub dir: PathBuf,
    pub ca: PathBuf,
    pub other_ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

impl Certs {
    pub fn generate() -> Certs {
        let dir = std::env::temp_dir().join(unique_name("outboxd_certs"));
        std::fs::create_dir_all(&dir).unwrap();
        let openssl = |args: &[&str]| run(Command::new("openssl").current_dir(&dir).args(args));
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        for (name, cn) in [("ca", "outboxd test CA"), ("other_ca", "unrelated CA")] {
            let (key, pem, subj) = (format!("{name}.key"), format!("{name}.pem"), format!("/CN={cn}"));
            let mut args = vec![
                "req", "-x509", "-days", "2", "-subj", &subj, "-keyout", &key, "-out", &pem,
            ];
            args.extend(ec);
            openssl(&args);
        }
        let mut args = vec![
            "req",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ];
        args.extend(ec);
        openssl(&args);
        std::fs::write(dir.join("san.ext"), "subjectAltName = DNS:localhost\n").unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "server.pem",
        ]);
        Certs {
            ca: dir.join("ca.pem"),
            other_ca: dir.join("other_ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
            dir,
        }
    }
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
