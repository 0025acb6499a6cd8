//! The one error type of the emulator's request paths. Each variant is a condition Event
//! Hubs really returns, so a client reacts to the emulator as it would to the service: the
//! AMQP condition (on a detach or a rejected delivery) and the HTTP-like status code (on a
//! `$cbs`/`$management` response) both come from here.

use fe2o3_amqp::types::definitions::{self, AmqpError, ErrorCondition, LinkError};
use fe2o3_amqp::types::primitives::Symbol;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmulatorError {
    /// No such hub, consumer group or partition.
    #[error("{0}")]
    NotFound(String),
    /// No valid token for the entity, or a token was refused.
    #[error("{0}")]
    Unauthorized(String),
    /// The receiver lost (or could not take) its partition to a higher epoch.
    #[error("{0}")]
    LinkStolen(String),
    /// More than five non-epoch receivers, or another quota.
    #[error("{0}")]
    ResourceLimitExceeded(String),
    /// A start position past the end of the partition.
    #[error("{0}")]
    ArgumentOutOfRange(String),
    /// A malformed request, address or filter.
    #[error("{0}")]
    ArgumentError(String),
    /// Injected throttling ([`super::FaultHandle::server_busy_for`]).
    #[error("{0}")]
    ServerBusy(String),
}

impl EmulatorError {
    /// The AMQP error condition the service uses for this case.
    pub fn condition(&self) -> ErrorCondition {
        match self {
            EmulatorError::NotFound(_) => AmqpError::NotFound.into(),
            EmulatorError::Unauthorized(_) => AmqpError::UnauthorizedAccess.into(),
            EmulatorError::LinkStolen(_) => LinkError::Stolen.into(),
            EmulatorError::ResourceLimitExceeded(_) => AmqpError::ResourceLimitExceeded.into(),
            EmulatorError::ArgumentOutOfRange(_)
            | EmulatorError::ArgumentError(_)
            | EmulatorError::ServerBusy(_) => {
                ErrorCondition::Custom(Symbol::from(self.condition_symbol()))
            }
        }
    }

    /// The status code of a management/CBS response (the mapping .NET's `AmqpError.cs`
    /// uses in the other direction).
    pub fn status_code(&self) -> i32 {
        match self {
            EmulatorError::NotFound(_) => 404,
            EmulatorError::Unauthorized(_) => 401,
            EmulatorError::LinkStolen(_) => 410,
            EmulatorError::ResourceLimitExceeded(_) => 403,
            EmulatorError::ArgumentOutOfRange(_) | EmulatorError::ArgumentError(_) => 400,
            EmulatorError::ServerBusy(_) => 503,
        }
    }

    /// The condition as a symbol string, for `error-condition` in management responses.
    pub fn condition_symbol(&self) -> &'static str {
        match self {
            EmulatorError::NotFound(_) => "amqp:not-found",
            EmulatorError::Unauthorized(_) => "amqp:unauthorized-access",
            EmulatorError::LinkStolen(_) => "amqp:link:stolen",
            EmulatorError::ResourceLimitExceeded(_) => "amqp:resource-limit-exceeded",
            EmulatorError::ArgumentOutOfRange(_) => "com.microsoft:argument-out-of-range",
            EmulatorError::ArgumentError(_) => "com.microsoft:argument-error",
            EmulatorError::ServerBusy(_) => "com.microsoft:server-busy",
        }
    }

    pub fn to_amqp(&self) -> definitions::Error {
        definitions::Error::new(self.condition(), Some(self.to_string()), None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_are_the_service_symbols() {
        let cases = [
            (
                EmulatorError::LinkStolen(String::new()),
                "amqp:link:stolen",
                410,
            ),
            (
                EmulatorError::Unauthorized(String::new()),
                "amqp:unauthorized-access",
                401,
            ),
            (
                EmulatorError::ServerBusy(String::new()),
                "com.microsoft:server-busy",
                503,
            ),
            (
                EmulatorError::ResourceLimitExceeded(String::new()),
                "amqp:resource-limit-exceeded",
                403,
            ),
        ];
        for (err, symbol, code) in cases {
            assert_eq!(err.condition_symbol(), symbol);
            assert_eq!(err.status_code(), code);
        }
    }
}
