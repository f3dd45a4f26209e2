//! Topics of a run: the event topic is created before the relay starts (so the consumer is already reading
//! when the first event arrives); every topic of the run is deleted afterwards.

use anyhow::{bail, Context, Result};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::types::RDKafkaErrorCode;
use std::time::Duration;

fn admin(bootstrap: &str) -> Result<AdminClient<DefaultClientContext>> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("log_level", "3")
        .create()
        .with_context(|| format!("admin client for {bootstrap}"))
}

fn options() -> AdminOptions {
    AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)))
}

/// Creates a topic (fine when it exists).
pub async fn create_topic(bootstrap: &str, name: &str, partitions: i32) -> Result<()> {
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    let results = admin(bootstrap)?
        .create_topics([&topic], &options())
        .await
        .with_context(|| format!("CreateTopics {name}: is the broker up (scripts/services up kafka)?"))?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, code)) => bail!("CreateTopics {t}: {code}"),
        }
    }
    Ok(())
}

/// Deletes topics, ignoring the ones that do not exist (best effort: a run's data is not needed afterwards).
pub async fn delete_topics(bootstrap: &str, names: &[String]) -> Result<()> {
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let results = admin(bootstrap)?.delete_topics(&names, &options()).await?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
            Err((t, code)) => bail!("DeleteTopics {t}: {code}"),
        }
    }
    Ok(())
}
