//! `outboxd schemas check|register`: the schema gate without the pipeline (the CI/CD gate before a deploy).

use super::exit::Exit;
use outboxd::PipelineConfig;

/// Checks (and with `register`, registers) every configured schema; prints one line per subject.
pub async fn run(config: &PipelineConfig, register: bool) -> Exit {
    match outboxd_avro::check_schemas(&config.avro, register).await {
        Ok(report) => {
            print!("{report}");
            if report.passed() {
                println!("schemas: all {} subject(s) pass", report.subjects.len());
                Exit::ok()
            } else {
                Exit::check_failed(format!(
                    "{} schema(s) failed the compatibility gate (see above)",
                    report.failures().count()
                ))
            }
        }
        Err(e) => Exit::failed(format!(
            "schema registry at {}: {e}",
            super::config_file::redact_url(&config.avro.registry_url)
        )),
    }
}
