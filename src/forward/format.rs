//! The lines sinks receive: the Log Analytics row as a JSON object in the route's column
//! order, and where it came from.

use crate::kql::plan::OutColumn;
use crate::source::Position;
use crate::value::Value;

/// `{"TimeGenerated":"…",…,"_hubwatch":{"route":…,"source":…,"partition":…,"offset":…,
/// "sequence_number":…,"enqueued_time":…}}` (no enqueued time for a file).
pub fn row_json(
    out: &mut Vec<u8>,
    columns: &[OutColumn],
    row: &[Value],
    route: &str,
    source: &str,
    position: &Position,
) {
    out.push(b'{');
    for (col, v) in columns.iter().zip(row) {
        push_json(out, &serde_json::Value::String(col.name.to_string()));
        out.push(b':');
        push_json(out, &v.to_json());
        out.push(b',');
    }
    let mut meta = serde_json::json!({
        "route": route,
        "source": source,
        "partition": &*position.partition,
        "offset": position.offset,
        "sequence_number": position.sequence_number,
    });
    if let Some(t) = position.enqueued_time {
        meta["enqueued_time"] = serde_json::Value::String(crate::time::format_datetime(t));
    }
    out.extend_from_slice(b"\"_hubwatch\":");
    push_json(out, &meta);
    out.push(b'}');
}

fn push_json(out: &mut Vec<u8>, v: &serde_json::Value) {
    // Serializing a `Value` into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, v);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Type;
    use std::sync::Arc;

    #[test]
    fn a_row_is_one_json_object_in_column_order_with_its_origin() {
        let columns = vec![
            OutColumn {
                name: Arc::from("TimeGenerated"),
                ty: Type::DateTime,
                is_key: false,
            },
            OutColumn {
                name: Arc::from("ClusterName"),
                ty: Type::String,
                is_key: false,
            },
            OutColumn {
                name: Arc::from("Nodes"),
                ty: Type::Long,
                is_key: false,
            },
        ];
        let t = crate::time::parse_datetime("2024-05-20T10:00:00Z")
            .unwrap()
            .0;
        let row = vec![Value::DateTime(t), Value::str("gpu \"a\""), Value::Null];
        let position = Position {
            partition: Arc::from("3"),
            offset: 4096,
            sequence_number: 17,
            enqueued_time: Some(t),
        };
        let mut out = Vec::new();
        row_json(&mut out, &columns, &row, "siem", "eh", &position);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with(r#"{"TimeGenerated":"2024-05-20T10:00:00.0000000Z","ClusterName":"gpu \"a\"","Nodes":null,"_hubwatch":"#),
            "{text}"
        );
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["_hubwatch"]["sequence_number"], 17);
        assert_eq!(v["_hubwatch"]["partition"], "3");
        assert_eq!(
            v["_hubwatch"]["enqueued_time"],
            "2024-05-20T10:00:00.0000000Z"
        );
    }
}
