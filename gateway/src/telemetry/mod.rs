//! What the gateway tells its operator: the Prometheus registry (`metrics`), the tracing
//! set-up and access log (`logging`), and the one `X-Request-Id` rule of all three listeners
//! (`request_id`), and the OpenTelemetry spans exported over OTLP (`traces`). Audit events are `events`.

pub mod logging;
pub mod metrics;
pub mod request_id;
pub mod traces;
