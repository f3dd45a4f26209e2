//! Throwaway Postgres clusters come from the testkit (`outboxd_testkit::cluster`); this adds the TLS
//! certificates the wal crate's TLS tests need.

#[allow(unused_imports)] // common/ is compiled into every test binary; not all of them use these
pub use outboxd_testkit::cluster::{free_port, Cluster, Setup};
use outboxd_testkit::unique_name;
use std::path::PathBuf;
use std::process::Command;

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
