//! Helpers shared by the integration suites: schema directories, configs, raw registry reads.

#![allow(dead_code)]

use outboxd_avro::{AvroConfig, SubjectStrategy};
use outboxd_testkit::unique_name;
use std::path::{Path, PathBuf};

/// A fresh directory holding `files` (name, text); removed at drop.
#[derive(Debug)]
pub struct SchemaDir {
    pub path: PathBuf,
}

impl SchemaDir {
    pub fn new(files: &[(&str, &str)]) -> SchemaDir {
        let path = std::env::temp_dir().join(unique_name("outboxd_avro_schemas"));
        std::fs::create_dir_all(&path).unwrap();
        let dir = SchemaDir { path };
        for (name, text) in files {
            dir.write(name, text);
        }
        dir
    }

    pub fn write(&self, name: &str, text: &str) {
        std::fs::write(self.path.join(name), text).unwrap();
    }
}

impl Drop for SchemaDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A config for `registry_url` and `dir`, default strategy (record name).
pub fn config(registry_url: &str, dir: &Path) -> AvroConfig {
    AvroConfig {
        registry_url: registry_url.to_string(),
        schema_dir: dir.to_path_buf(),
        request_timeout_ms: 5_000,
        ..Default::default()
    }
}

/// As [`config`] with the topic-record-name strategy (subjects unique per topic).
pub fn topic_config(registry_url: &str, dir: &Path) -> AvroConfig {
    AvroConfig {
        subject_strategy: SubjectStrategy::TopicRecordName,
        ..config(registry_url, dir)
    }
}

/// A record schema `<ns>.<name>` with the given fields (JSON array text).
pub fn record(ns: &str, name: &str, fields: &str) -> String {
    format!(r#"{{"type":"record","name":"{name}","namespace":"{ns}","fields":{fields}}}"#)
}

/// `GET {url}{path}`: status and JSON body.
pub async fn get(url: &str, path: &str) -> (u16, serde_json::Value) {
    let resp = reqwest::get(format!("{url}{path}"))
        .await
        .unwrap_or_else(|e| panic!("GET {url}{path}: {e}"));
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(serde_json::Value::Null))
}

/// The versions registered under `subject` (empty when none).
pub async fn versions(url: &str, subject: &str) -> Vec<i64> {
    match get(url, &format!("/subjects/{subject}/versions")).await {
        (200, serde_json::Value::Array(v)) => v.iter().filter_map(serde_json::Value::as_i64).collect(),
        _ => Vec::new(),
    }
}

/// The schema registered with `id`, parsed (`GET /schemas/ids/{id}`).
pub async fn schema_by_id(url: &str, id: u32) -> apache_avro::Schema {
    let (status, body) = get(url, &format!("/schemas/ids/{id}")).await;
    assert_eq!(status, 200, "GET /schemas/ids/{id}: {body}");
    apache_avro::Schema::parse_str(body["schema"].as_str().unwrap()).unwrap()
}
