//! Throwaway Postgres clusters and TLS certificates come from the testkit (`outboxd_testkit::cluster`).

#[allow(unused_imports)] // common/ is compiled into every test binary; not all of them use these
pub use outboxd_testkit::cluster::{free_port, Certs, Cluster, Setup};
