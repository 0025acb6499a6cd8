//! The Elasticsearch / OpenSearch sink: rows indexed through `_bulk`.
//!
//! - Each row one `create` action and its document. The document is the row's JSON with
//!   `@timestamp` (`TimeGenerated`) first, so that it can go to a **data stream**
//!   (`logs-azure.{table}-default`, the default) or to a **dated index**
//!   (`hubwatch-{table}-%Y.%m.%d`); names are lowercased. A route's `index` overrides the
//!   sink's.
//! - `_id` is the row's lasting name ([`Routed::id`]): a batch sent again after a crash or
//!   a lost answer meets `409 version_conflict` for what is already in, which counts as
//!   taken — resends add no duplicates.
//! - **Per-item answers**: 2xx and 409 taken; 429 and 5xx sent again with backoff, and so
//!   are 401/403/404 (credentials, an index auto-create refuses: an operator fixes those);
//!   any other item error (a mapping conflict, a bad index name) dead-lettered with its
//!   type and reason. An answer that does not answer every action sends the batch again.
//!   A whole request refused (400) is split to find the culprit; 429, 5xx, 401 and 403
//!   are retried.
//! - `ecs = true` adds Elastic Common Schema fields beside the Log Analytics columns:
//!   `ecs.version`, `event.dataset` (`azure.<table>`), `event.action` (`OperationName`),
//!   `event.outcome` (from `ResultType`), `log.level` (`Level`), `cloud.provider`, and
//!   `azure.resource.id` (`_ResourceId`).

use serde::Deserialize;

use super::buffered::{Deliver, Encode, Failure, Rejection, Report};
use super::format::push_str;
use super::http::{self, Client};
use super::template::Template;
use super::Routed;

pub struct BulkEncode {
    pub index: Template,
    pub ecs: bool,
    scratch: String,
}

impl BulkEncode {
    pub fn new(index: Option<Template>, ecs: bool) -> BulkEncode {
        BulkEncode {
            index: index.unwrap_or_else(|| {
                Template::parse("logs-azure.{table}-default", true).expect("a valid template")
            }),
            ecs,
            scratch: String::new(),
        }
    }
}

/// `event.outcome` from a Log Analytics `ResultType`.
fn outcome(result: &str) -> &'static str {
    let r = result.to_ascii_lowercase();
    if r.starts_with("succe") || r == "ok" || r == "completed" {
        "success"
    } else if r.starts_with("fail") || r.starts_with("error") {
        "failure"
    } else {
        "unknown"
    }
}

impl Encode for BulkEncode {
    fn encode(&mut self, row: &Routed<'_>, out: &mut Vec<u8>) {
        self.scratch.clear();
        row.meta
            .index
            .as_ref()
            .unwrap_or(&self.index)
            .render(row, &mut self.scratch);
        out.extend_from_slice(b"{\"create\":{\"_index\":");
        push_str(out, &self.scratch);
        out.extend_from_slice(b",\"_id\":");
        push_str(out, &row.id());
        out.extend_from_slice(b"}}\n{\"@timestamp\":\"");
        crate::time::push_datetime(out, row.time);
        out.push(b'"');
        if self.ecs {
            out.extend_from_slice(b",\"ecs\":{\"version\":\"8.11.0\"},\"cloud\":{\"provider\":\"azure\"},\"event\":{\"dataset\":");
            push_str(out, &format!("azure.{}", row.table.to_ascii_lowercase()));
            if let Some(op) = row.field(row.known.operation) {
                out.extend_from_slice(b",\"action\":");
                push_str(out, &op);
            }
            if let Some(r) = row.field(row.known.result_type) {
                out.extend_from_slice(b",\"outcome\":");
                push_str(out, outcome(&r));
            }
            out.push(b'}');
            if let Some(level) = row.level() {
                out.extend_from_slice(b",\"log\":{\"level\":");
                push_str(out, &level.to_ascii_lowercase());
                out.push(b'}');
            }
            if let Some(id) = row.field(row.known.resource_id) {
                out.extend_from_slice(b",\"azure\":{\"resource\":{\"id\":");
                push_str(out, &id);
                out.extend_from_slice(b"}}");
            }
        }
        // The row's own columns follow (its JSON without the opening brace).
        match row.json.strip_prefix(b"{") {
            Some(rest) if rest.len() > 1 => {
                out.push(b',');
                out.extend_from_slice(rest);
            }
            _ => out.push(b'}'),
        }
        out.push(b'\n');
    }
}

pub struct BulkDeliver {
    client: Client,
    url: String,
    headers: Vec<(String, String)>,
}

impl BulkDeliver {
    /// `base`: `https://es:9200`; `auth`: an `Authorization` header value (`ApiKey …`,
    /// `Basic …`), if any.
    pub fn new(client: Client, base: &str, auth: Option<String>) -> BulkDeliver {
        let mut headers = vec![(
            "Content-Type".to_string(),
            "application/x-ndjson".to_string(),
        )];
        if let Some(a) = auth {
            headers.push(("Authorization".into(), a));
        }
        BulkDeliver {
            client,
            url: format!("{}/_bulk", base.trim_end_matches('/')),
            headers,
        }
    }
}

#[derive(Debug, Deserialize)]
struct BulkAnswer {
    errors: bool,
    items: Vec<std::collections::HashMap<String, Item>>,
}

#[derive(Debug, Deserialize)]
struct Item {
    status: u16,
    error: Option<ItemError>,
}

#[derive(Debug, Deserialize)]
struct ItemError {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    reason: String,
}

/// What the per-item answers mean for a delivery of `n` messages.
fn items(answer: BulkAnswer, n: usize, receiver: &str) -> Result<Report, Failure> {
    // Every action answered, or the answer is not one (a proxy's, another endpoint's):
    // then the batch goes again, which the documents' ids make harmless.
    if answer.items.len() != n {
        return Err(Failure::new(
            "bulk_answer",
            format!(
                "{receiver} answered {} items for {n} actions; the batch is sent again",
                answer.items.len()
            ),
        ));
    }
    let mut report = Report::default();
    if !answer.errors {
        return Ok(report);
    }
    for (i, item) in answer.items.into_iter().enumerate() {
        let Some(item) = item.into_values().next() else {
            continue;
        };
        match item.status {
            200..=299 | 409 => {}
            // Pushing back, or — like the whole-request statuses — credentials or an index
            // an operator fixes (a key that may not write a new index, auto-create off):
            // sent again with backoff, never dead-lettered.
            401 | 403 | 404 | 429 => {
                report.retry.push(i);
                report.throttled = true;
            }
            s if s >= 500 => report.retry.push(i),
            s => {
                let e = item.error.unwrap_or(ItemError {
                    kind: format!("status_{s}"),
                    reason: String::new(),
                });
                report.rejected.push(Rejection {
                    index: i,
                    reason: if e.kind.is_empty() {
                        format!("status_{s}")
                    } else {
                        e.kind.clone()
                    },
                    detail: format!(
                        "{receiver} refused the document ({s} {}): {}",
                        e.kind, e.reason
                    ),
                });
            }
        }
    }
    Ok(report)
}

#[async_trait::async_trait]
impl Deliver for BulkDeliver {
    async fn deliver(&mut self, messages: &[&[u8]]) -> Result<Report, Failure> {
        let body = messages.concat();
        let answer = self.client.post(&self.url, &self.headers, body).await?;
        let receiver = &self.client.receiver;
        if answer.status == 200 {
            let parsed: BulkAnswer = serde_json::from_slice(&answer.body).map_err(|e| {
                Failure::new(
                    "bulk_answer",
                    format!(
                        "{receiver} answered _bulk with what is not a bulk response ({e}): {}",
                        answer.text()
                    ),
                )
            })?;
            items(parsed, messages.len(), receiver)
        } else {
            http::answered(&answer, receiver, messages.len())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(json: &str) -> BulkAnswer {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn item_answers_split_into_taken_retried_and_refused() {
        let a = answer(
            r#"{"took":3,"errors":true,"items":[
                {"create":{"status":201}},
                {"create":{"status":409,"error":{"type":"version_conflict_engine_exception","reason":"exists"}}},
                {"create":{"status":429,"error":{"type":"es_rejected_execution_exception","reason":"queue full"}}},
                {"create":{"status":400,"error":{"type":"mapper_parsing_exception","reason":"failed to parse field [Level]"}}},
                {"create":{"status":503,"error":{"type":"unavailable_shards_exception","reason":"no shard"}}}
            ]}"#,
        );
        let r = items(a, 5, "es").unwrap();
        assert_eq!(r.retry, vec![2, 4]);
        assert!(r.throttled);
        assert_eq!(r.rejected.len(), 1);
        assert_eq!(r.rejected[0].index, 3);
        assert_eq!(r.rejected[0].reason, "mapper_parsing_exception");
        assert!(r.rejected[0]
            .detail
            .contains("failed to parse field [Level]"));
        assert_eq!(
            items(
                answer(r#"{"errors":false,"items":[{"create":{"status":201}}]}"#),
                1,
                "es"
            )
            .unwrap(),
            Report::default()
        );
        assert_eq!(
            items(answer(r#"{"errors":false,"items":[]}"#), 5, "es")
                .unwrap_err()
                .kind,
            "bulk_answer",
            "an answer for fewer actions than were sent is not a delivery"
        );
        assert!(serde_json::from_str::<BulkAnswer>(r#"{"acknowledged":true}"#).is_err());
        assert_eq!(
            items(answer(r#"{"errors":true,"items":[]}"#), 2, "es")
                .unwrap_err()
                .kind,
            "bulk_answer"
        );
    }

    #[test]
    fn outcomes_read_from_result_types() {
        assert_eq!(outcome("Succeeded"), "success");
        assert_eq!(outcome("Failed"), "failure");
        assert_eq!(outcome("Started"), "unknown");
    }
}
