//! Logs and traces: `tracing` to stderr, and OpenTelemetry spans exported over OTLP when
//! `SMS_OTLP_ENDPOINT` is set. Trace ids exist either way, so the W3C trace context is carried
//! through NATS headers and carrier calls even with no collector.

use std::sync::OnceLock;
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{ConfigError, Env};

/// Telemetry settings.
#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    /// `SMS_LOG`: an `EnvFilter` directive (default `info,sqlx=warn`).
    pub log: String,
    /// `SMS_LOG_FORMAT`: `text` or `json`.
    pub json: bool,
    /// `SMS_OTLP_ENDPOINT`: OTLP/gRPC collector, e.g. `http://127.0.0.1:4317`.
    pub otlp_endpoint: Option<String>,
}

impl TelemetryConfig {
    /// Reads the telemetry variables.
    pub fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        let log = env.string_or("SMS_LOG", "info,sqlx=warn");
        EnvFilter::try_new(&log).map_err(|e| ConfigError::new("SMS_LOG", log.clone(), e))?;
        let json = match env.string_or("SMS_LOG_FORMAT", "text").as_str() {
            "text" => false,
            "json" => true,
            other => {
                return Err(ConfigError::new(
                    "SMS_LOG_FORMAT",
                    other,
                    "expected text or json",
                ));
            }
        };
        Ok(TelemetryConfig {
            log,
            json,
            otlp_endpoint: env.raw("SMS_OTLP_ENDPOINT"),
        })
    }
}

/// Keeps the tracer provider alive; [`Telemetry::shutdown`] flushes pending spans.
#[derive(Debug)]
pub struct Telemetry {
    provider: SdkTracerProvider,
}

static INSTALLED: OnceLock<()> = OnceLock::new();

impl Telemetry {
    /// Installs the global subscriber and tracer for `service`. Only the first call in a
    /// process installs anything (tests start several services in one process).
    pub fn init(service: &str, config: &TelemetryConfig) -> Telemetry {
        let mut builder = SdkTracerProvider::builder().with_resource(
            Resource::builder()
                .with_service_name(service.to_owned())
                .build(),
        );
        if let Some(endpoint) = &config.otlp_endpoint {
            match opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .with_timeout(Duration::from_secs(3))
                .build()
            {
                Ok(exporter) => builder = builder.with_batch_exporter(exporter),
                Err(e) => eprintln!("SMS_OTLP_ENDPOINT={endpoint:?}: cannot export traces: {e}"),
            }
        }
        let provider = builder.build();
        if INSTALLED.set(()).is_ok() {
            opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
            // Spans exist (and carry trace context) at INFO whatever the log filter says:
            // quiet logs must not break the trace that follows a message.
            let otel = tracing_opentelemetry::layer()
                .with_tracer(provider.tracer("sms"))
                .with_filter(LevelFilter::INFO);
            let filter = EnvFilter::try_new(&config.log).unwrap_or_else(|_| EnvFilter::new("info"));
            let registry = tracing_subscriber::registry().with(otel);
            let result = if config.json {
                let fmt = tracing_subscriber::fmt::layer().json().with_filter(filter);
                registry.with(fmt).try_init()
            } else {
                let fmt = tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_filter(filter);
                registry.with(fmt).try_init()
            };
            if let Err(e) = result {
                eprintln!("tracing was already initialised: {e}");
            }
        }
        Telemetry { provider }
    }

    /// Flushes pending spans, waiting at most a few seconds.
    pub async fn shutdown(self) {
        let provider = self.provider;
        let flush = tokio::task::spawn_blocking(move || provider.shutdown());
        if tokio::time::timeout(Duration::from_secs(5), flush)
            .await
            .is_err()
        {
            eprintln!("trace flush timed out");
        }
    }
}
