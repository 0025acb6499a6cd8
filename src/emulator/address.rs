//! Link addresses → the entity a link is for. Clients send either a path
//! (`hub/ConsumerGroups/cg/Partitions/0`) or a full URL
//! (`amqps://ns.servicebus.windows.net/hub/ConsumerGroups/cg/Partitions/0`); the keywords are
//! matched case-insensitively, names are kept as sent.

use super::EmulatorError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entity {
    /// The claims-based-security node.
    Cbs,
    /// The management node (READ of hub and partition properties).
    Management,
    /// Send to the hub: routed by partition key or round robin.
    Hub { hub: String },
    /// Send to one partition.
    PartitionSend { hub: String, partition: String },
    /// Receive from one partition for one consumer group.
    PartitionReceive {
        hub: String,
        group: String,
        partition: String,
    },
}

impl Entity {
    /// The path a token must cover to use this entity (`None` for the nodes anyone may
    /// attach to: authorization happens inside their requests).
    pub fn auth_path(&self) -> Option<String> {
        match self {
            Entity::Cbs | Entity::Management => None,
            Entity::Hub { hub } => Some(hub.clone()),
            Entity::PartitionSend { hub, partition } => {
                Some(format!("{hub}/Partitions/{partition}"))
            }
            Entity::PartitionReceive {
                hub,
                group,
                partition,
            } => Some(format!(
                "{hub}/ConsumerGroups/{group}/Partitions/{partition}"
            )),
        }
    }
}

/// Longest address accepted.
const MAX_ADDRESS_LEN: usize = 1024;

pub fn parse(address: &str) -> Result<Entity, EmulatorError> {
    let bad = || {
        EmulatorError::NotFound(format!(
            "The messaging entity '{address}' could not be found."
        ))
    };
    if address.len() > MAX_ADDRESS_LEN {
        return Err(bad());
    }
    let path = match address.split_once("://") {
        Some((_, rest)) => rest.split_once('/').map_or("", |(_, p)| p),
        None => address,
    };
    let path = path.split(['?', '#']).next().unwrap_or("");
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let is = |s: &str, word: &str| s.eq_ignore_ascii_case(word);
    match segments.as_slice() {
        // `$cbs`/`$management`, also when a client prefixes them with the hub path.
        [.., last] if is(last, "$cbs") => Ok(Entity::Cbs),
        [.., last] if is(last, "$management") => Ok(Entity::Management),
        [hub] => Ok(Entity::Hub {
            hub: hub.to_string(),
        }),
        [hub, p, partition] if is(p, "partitions") => Ok(Entity::PartitionSend {
            hub: hub.to_string(),
            partition: partition.to_string(),
        }),
        [hub, g, group, p, partition] if is(g, "consumergroups") && is(p, "partitions") => {
            Ok(Entity::PartitionReceive {
                hub: hub.to_string(),
                group: group.to_string(),
                partition: partition.to_string(),
            })
        }
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_and_every_entity() {
        let recv = Entity::PartitionReceive {
            hub: "hub".into(),
            group: "$Default".into(),
            partition: "3".into(),
        };
        assert_eq!(
            parse("hub/ConsumerGroups/$Default/Partitions/3").unwrap(),
            recv
        );
        assert_eq!(
            parse("amqps://ns.servicebus.windows.net/hub/consumergroups/$Default/partitions/3")
                .unwrap(),
            recv
        );
        assert_eq!(
            parse("amqp://127.0.0.1:5672/hub/ConsumerGroups/$Default/Partitions/3/").unwrap(),
            recv
        );
        assert_eq!(
            parse("amqps://localhost/hub").unwrap(),
            Entity::Hub { hub: "hub".into() }
        );
        assert_eq!(
            parse("hub/Partitions/1").unwrap(),
            Entity::PartitionSend {
                hub: "hub".into(),
                partition: "1".into()
            }
        );
        assert_eq!(parse("$cbs").unwrap(), Entity::Cbs);
        assert_eq!(parse("$management").unwrap(), Entity::Management);
        assert_eq!(
            parse("amqps://h/hub/$management").unwrap(),
            Entity::Management
        );
        assert_eq!(
            recv.auth_path().unwrap(),
            "hub/ConsumerGroups/$Default/Partitions/3"
        );
    }

    #[test]
    fn unknown_shapes_are_not_found() {
        for a in [
            "",
            "amqps://host",
            "hub/ConsumerGroups/x",
            "hub/Queues/1",
            "a/b/c/d/e/f",
        ] {
            assert!(matches!(parse(a), Err(EmulatorError::NotFound(_))), "{a}");
        }
    }
}
