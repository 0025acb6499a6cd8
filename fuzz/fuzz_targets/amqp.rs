//! What the Event Hubs emulator makes of what an AMQP client sends: a transferred message's
//! bytes (a single event or a batch envelope, unpacked, its annotations read, stamped for
//! delivery and sized), an entity address and a selector filter. The first byte picks the
//! message format. No input may panic any of it.

#![no_main]

use fe2o3_amqp_types::messaging::message::__private::Deserializable;
use hubwatch::emulator::fuzzing::{
    encoded_size, for_delivery, parse_address, parse_filter, partition_key, unpack, AmqpMessage,
    BATCH_FORMAT,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if let Ok(text) = std::str::from_utf8(rest) {
        let _ = parse_address(text);
        let _ = parse_filter(text);
    }
    let Ok(Deserializable(message)) = serde_amqp::from_slice::<Deserializable<AmqpMessage>>(rest)
    else {
        return;
    };
    let format = match mode % 3 {
        0 => None,
        1 => Some(0),
        _ => Some(BATCH_FORMAT),
    };
    let Ok(events) = unpack(format, message) else {
        return;
    };
    for (i, event) in events.into_iter().enumerate() {
        let _ = partition_key(&event);
        let stamped = for_delivery(event, i as i64, i as u64 * 100, 1_700_000_000_000);
        let _ = encoded_size(&stamped);
    }
});
