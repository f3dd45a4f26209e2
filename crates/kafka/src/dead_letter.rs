//! A record read back from the dead-letter topic ([`DeadLetter`]), the `dlq_*` header names, and the headers
//! of a dead letter appended again by a replay ([`requeued_headers`]). Rebuilding the outbox event a dead
//! letter stands for is `outboxd-record`'s business.

use crate::headers::{HeaderList, HeaderValue};

/// Header naming the dead letter a record was copied from: `<partition>/<offset>` of the dead-letter topic.
pub const REPLAYED_FROM: &str = "dlq_replayed_from";
/// Header counting how many replays a dead letter went through without fitting.
pub const REPLAYS: &str = "dlq_replays";
/// Header carrying the reason code of a dead letter ([`DlqReason::code`]).
pub const REASON: &str = "dlq_reason";
/// Header carrying the human-readable detail of a dead letter.
pub const DETAIL: &str = "dlq_detail";
/// Header naming the topic a dead letter was meant for.
pub const INTENDED_TOPIC: &str = "dlq_intended_topic";

/// One record read back from the dead-letter topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    /// Its partition in the dead-letter topic.
    pub partition: i32,
    /// Its offset there.
    pub offset: i64,
    /// The key (the aggregate id, as plain bytes), if any.
    pub key: Option<Vec<u8>>,
    /// The original payload bytes, if the dead letter kept them.
    pub value: Option<Vec<u8>>,
    /// Its headers, in order.
    pub headers: HeaderList,
}

impl DeadLetter {
    /// The first header of that name, when it is UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// `<partition>/<offset>`: where it sits in the dead-letter topic.
    pub fn position(&self) -> String {
        format!("{}/{}", self.partition, self.offset)
    }

    /// Its reason code (`dlq_reason`), `unknown` when it has none.
    pub fn reason(&self) -> &str {
        self.header(REASON).unwrap_or("unknown")
    }

    /// Its detail (`dlq_detail`), empty when it has none.
    pub fn detail(&self) -> &str {
        self.header(DETAIL).unwrap_or_default()
    }

    /// The topic it was meant for, when the pipeline could route it.
    pub fn intended_topic(&self) -> Option<&str> {
        self.header(INTENDED_TOPIC).filter(|t| !t.is_empty())
    }

    /// How many replays it went through already (`dlq_replays`, 0 when absent).
    pub fn replays(&self) -> u32 {
        self.header(REPLAYS).and_then(|v| v.parse().ok()).unwrap_or(0)
    }
}

/// The headers of a dead letter appended again: its own, with `dlq_replays` incremented, `dlq_replayed_from`
/// naming the copy's origin, and `dlq_reason` / `dlq_detail` replaced when `reason` is given (it still does
/// not fit, for a new reason).
pub fn requeued_headers(dl: &DeadLetter, reason: Option<(&str, &str)>) -> HeaderList {
    let mut list = HeaderList::with_capacity(dl.headers.len() + 2);
    let (mut reason_set, mut detail_set) = (false, false);
    for (k, v) in &dl.headers {
        match (&**k, reason) {
            (REPLAYS | REPLAYED_FROM, _) => continue,
            (REASON, Some((code, _))) if !reason_set => {
                reason_set = true;
                list.push((k.clone(), HeaderValue::from_slice(code.as_bytes())));
            }
            (DETAIL, Some((_, detail))) if !detail_set => {
                detail_set = true;
                list.push((k.clone(), HeaderValue::from_slice(detail.as_bytes())));
            }
            (REASON | DETAIL, Some(_)) => continue,
            _ => list.push((k.clone(), v.clone())),
        }
    }
    if let Some((code, detail)) = reason {
        if !reason_set {
            list.push((REASON.into(), HeaderValue::from_slice(code.as_bytes())));
        }
        if !detail_set {
            list.push((DETAIL.into(), HeaderValue::from_slice(detail.as_bytes())));
        }
    }
    list.push((REPLAYS.into(), (dl.replays() + 1).to_string().into_bytes().into()));
    list.push((REPLAYED_FROM.into(), dl.position().into_bytes().into()));
    list
}
