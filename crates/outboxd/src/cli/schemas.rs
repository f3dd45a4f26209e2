//! `outboxd schemas check|register`: the schema gate without the pipeline (the CI/CD gate before a deploy).

use super::exit::Exit;
use outboxd::PipelineConfig;

/// Checks (and with `register`, registers) every configured schema; prints one line per subject. With
/// `kafka.routing.event_name_rule`, every event type with a schema must follow it too.
pub async fn run(config: &PipelineConfig, register: bool) -> Exit {
    match outboxd_avro::check_schemas(&config.avro, register).await {
        Ok(report) => {
            print!("{report}");
            let misnamed = misnamed(config, &report);
            for why in &misnamed {
                println!("[FAIL] naming: {why}");
            }
            if !misnamed.is_empty() {
                Exit::check_failed(format!(
                    "{} event type(s) break kafka.routing.event_name_rule (see above)",
                    misnamed.len()
                ))
            } else if report.passed() {
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

/// How the event types of the report break the configured naming rule (none without a rule).
fn misnamed(config: &PipelineConfig, report: &outboxd_avro::GateReport) -> Vec<String> {
    let Some(rule) = config.kafka.routing.event_name_rule else {
        return Vec::new();
    };
    report
        .subjects
        .iter()
        .flat_map(|s| &s.event_types)
        .filter_map(|t| rule.check(t).err())
        .collect()
}
