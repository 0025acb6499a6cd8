//! Messages in and out: unpacking producer batches (message format `0x80013700`, one data
//! section per encoded message), and dressing a stored event for delivery with the
//! `x-opt-*` annotations Event Hubs adds.

use fe2o3_amqp::types::messaging::annotations::OwnedKey;
use fe2o3_amqp::types::messaging::message::__private::{Deserializable, Serializable};
use fe2o3_amqp::types::messaging::{Body, Data, Message, MessageAnnotations};
use fe2o3_amqp::types::primitives::{Binary, Symbol, Timestamp, Value};

use super::EmulatorError;

/// The message format of an Event Hubs batch envelope.
pub const BATCH_FORMAT: u32 = 0x8001_3700;
/// Events in one batch, at most (the service's 1 MB publication limit bounds it anyway).
pub const MAX_BATCH_EVENTS: usize = 10_000;

pub const SEQUENCE_NUMBER: &str = "x-opt-sequence-number";
pub const OFFSET: &str = "x-opt-offset";
pub const ENQUEUED_TIME: &str = "x-opt-enqueued-time";
pub const PARTITION_KEY: &str = "x-opt-partition-key";

pub type AmqpMessage = Message<Body<Value>>;

/// The events a transfer carries: one, or the messages inside a batch envelope. An inner
/// message without a partition key inherits the envelope's.
pub fn unpack(
    format: Option<u32>,
    envelope: AmqpMessage,
) -> Result<Vec<AmqpMessage>, EmulatorError> {
    if format != Some(BATCH_FORMAT) {
        return Ok(vec![envelope]);
    }
    let envelope_key = partition_key(&envelope);
    let sections = match envelope.body {
        Body::Data(sections) => sections,
        _ => {
            return Err(EmulatorError::ArgumentError(
                "a batch (message format 0x80013700) must carry data sections".into(),
            ))
        }
    };
    if sections.len() > MAX_BATCH_EVENTS {
        return Err(EmulatorError::ArgumentError(format!(
            "a batch holds at most {MAX_BATCH_EVENTS} events"
        )));
    }
    sections
        .into_iter()
        .map(|Data(bytes)| {
            let Deserializable(mut inner): Deserializable<AmqpMessage> =
                serde_amqp::from_slice(&bytes).map_err(|e| {
                    EmulatorError::ArgumentError(format!(
                        "a batch section is not an AMQP message: {e}"
                    ))
                })?;
            if let (None, Some(k)) = (partition_key(&inner), &envelope_key) {
                annotations(&mut inner).insert(key(PARTITION_KEY), Value::String(k.clone()));
            }
            Ok(inner)
        })
        .collect()
}

/// The `x-opt-partition-key` annotation, if set to a string.
pub fn partition_key(message: &AmqpMessage) -> Option<String> {
    match message
        .message_annotations
        .as_ref()?
        .get(&key(PARTITION_KEY))
    {
        Some(Value::String(k)) => Some(k.clone()),
        _ => None,
    }
}

/// The encoded size of a message, which is what offsets and byte retention count.
pub fn encoded_size(message: &AmqpMessage) -> u64 {
    serde_amqp::to_vec(&Serializable(message)).map_or(0, |v| v.len() as u64)
}

/// A message with one data section holding `body`.
pub fn data_message(body: Vec<u8>) -> AmqpMessage {
    Message::builder()
        .body(Body::Data(vec![Data(Binary::from(body))].into()))
        .build()
}

/// The message as a receiver gets it: the producer's sections, plus the broker's
/// annotations (which replace any a producer tried to set). A string partition key stays:
/// it is the one the event was routed by.
pub fn for_delivery(
    mut message: AmqpMessage,
    sequence_number: i64,
    offset: u64,
    enqueued_ms: i64,
) -> AmqpMessage {
    message.delivery_annotations = None;
    let map = annotations(&mut message);
    map.insert(key(SEQUENCE_NUMBER), Value::Long(sequence_number));
    map.insert(key(OFFSET), Value::String(offset.to_string()));
    map.insert(
        key(ENQUEUED_TIME),
        Value::Timestamp(Timestamp::from_milliseconds(enqueued_ms)),
    );
    if !matches!(map.get(&key(PARTITION_KEY)), Some(Value::String(_))) {
        map.swap_remove(&key(PARTITION_KEY));
    }
    message
}

fn key(name: &str) -> OwnedKey {
    OwnedKey::Symbol(Symbol::from(name))
}

fn annotations(message: &mut AmqpMessage) -> &mut MessageAnnotations {
    message
        .message_annotations
        .get_or_insert_with(|| MessageAnnotations(Default::default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(m: &AmqpMessage) -> Vec<u8> {
        serde_amqp::to_vec(&Serializable(m)).unwrap()
    }

    #[test]
    fn batches_unpack_and_inherit_the_key() {
        let mut first = data_message(b"one".to_vec());
        annotations(&mut first).insert(key(PARTITION_KEY), Value::String("k".into()));
        let second = data_message(b"two".to_vec());
        let mut envelope = data_message(Vec::new());
        envelope.body = Body::Data(
            vec![
                Data(Binary::from(encode(&first))),
                Data(Binary::from(encode(&second))),
            ]
            .into(),
        );
        annotations(&mut envelope).insert(key(PARTITION_KEY), Value::String("k".into()));
        let events = unpack(Some(BATCH_FORMAT), envelope).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(
            events[1].body,
            Body::Data(vec![Data(Binary::from(b"two".to_vec()))].into())
        );
        assert_eq!(partition_key(&events[1]).as_deref(), Some("k"));

        let single = unpack(None, data_message(b"x".to_vec())).unwrap();
        assert_eq!(single.len(), 1);
        let bad = unpack(
            Some(BATCH_FORMAT),
            Message::builder()
                .body(Body::Value(fe2o3_amqp::types::messaging::AmqpValue(
                    Value::Null,
                )))
                .build(),
        );
        assert!(bad.is_err());
    }

    #[test]
    fn delivery_annotations_are_the_brokers() {
        let mut produced = data_message(b"x".to_vec());
        annotations(&mut produced).insert(key(SEQUENCE_NUMBER), Value::Long(99));
        annotations(&mut produced).insert(key(PARTITION_KEY), Value::Long(5));
        assert!(encoded_size(&produced) > 0);
        let m = for_delivery(produced, 7, 1234, 1_700_000_000_000);
        let a = m.message_annotations.unwrap();
        assert_eq!(a.get(&key(SEQUENCE_NUMBER)), Some(&Value::Long(7)));
        assert_eq!(a.get(&key(OFFSET)), Some(&Value::String("1234".into())));
        assert_eq!(
            a.get(&key(ENQUEUED_TIME)),
            Some(&Value::Timestamp(Timestamp::from_milliseconds(
                1_700_000_000_000
            )))
        );
        assert_eq!(a.get(&key(PARTITION_KEY)), None);
        let mut keyed = data_message(b"y".to_vec());
        annotations(&mut keyed).insert(key(PARTITION_KEY), Value::String("k".into()));
        let keyed = for_delivery(keyed, 8, 1300, 0);
        assert_eq!(partition_key(&keyed).as_deref(), Some("k"));
    }
}
