//! Logs and traces: `tracing` to stderr, and OpenTelemetry spans exported over OTLP/gRPC when
//! an endpoint is set (`OTEL_EXPORTER_OTLP_ENDPOINT`, or ours, `SMS_OTLP_ENDPOINT`). With no
//! endpoint OpenTelemetry is not installed: spans serve the logs only, and no trace context is
//! made or passed on, so tracing that nobody collects costs nothing.

use std::sync::OnceLock;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{WithExportConfig, WithTonicConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{ConfigError, Env};

/// Telemetry settings: ours (`SMS_LOG`, `SMS_LOG_FORMAT`, `SMS_OTLP_ENDPOINT`) and the
/// standard OpenTelemetry variables, each value checked at start-up with an error that names
/// the variable.
#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    /// `SMS_LOG`: an `EnvFilter` directive (default `info,sqlx=warn`).
    pub log: String,
    /// `SMS_LOG_FORMAT`: `text` or `json`.
    pub json: bool,
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `OTEL_EXPORTER_OTLP_ENDPOINT` or
    /// `SMS_OTLP_ENDPOINT`: the OTLP/gRPC collector, e.g. `http://127.0.0.1:4317`; no export
    /// when none is set (and `OTEL_TRACES_EXPORTER` is not `otlp`).
    pub otlp_endpoint: Option<String>,
    /// `OTEL_SERVICE_NAME`: overrides the service's own name.
    pub service_name: Option<String>,
    /// `OTEL_RESOURCE_ATTRIBUTES`: `key=value` pairs added to every span's resource.
    pub resource_attributes: Vec<(String, String)>,
    /// `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG` (default `parentbased_always_on`).
    pub sampler: SamplerChoice,
    /// `OTEL_EXPORTER_OTLP_HEADERS` / `…_TRACES_HEADERS`: gRPC metadata on every export.
    pub otlp_headers: Vec<(String, String)>,
    /// `OTEL_EXPORTER_OTLP_TIMEOUT` / `…_TRACES_TIMEOUT`, in milliseconds (default 10 s).
    pub otlp_timeout: Duration,
    /// `OTEL_SDK_DISABLED=true`: no OpenTelemetry at all (no spans, no trace context).
    pub sdk_disabled: bool,
    /// Keep OpenTelemetry spans and carry trace context even with nothing to export to (tests
    /// that follow trace context through the services in one process). Off in the services:
    /// with no exporter, OpenTelemetry is not installed, and tracing costs nothing.
    pub context_without_export: bool,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            log: "info,sqlx=warn".to_owned(),
            json: false,
            otlp_endpoint: None,
            service_name: None,
            resource_attributes: Vec::new(),
            sampler: SamplerChoice::ParentBasedAlwaysOn,
            otlp_headers: Vec::new(),
            otlp_timeout: Duration::from_secs(10),
            sdk_disabled: false,
            context_without_export: false,
        }
    }
}

/// The samplers of the specification this build has.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SamplerChoice {
    /// `always_on`.
    AlwaysOn,
    /// `always_off`.
    AlwaysOff,
    /// `traceidratio` with its ratio.
    TraceIdRatio(f64),
    /// `parentbased_always_on` (the default).
    ParentBasedAlwaysOn,
    /// `parentbased_always_off`.
    ParentBasedAlwaysOff,
    /// `parentbased_traceidratio` with its ratio.
    ParentBasedTraceIdRatio(f64),
}

impl SamplerChoice {
    fn sampler(self) -> Sampler {
        match self {
            SamplerChoice::AlwaysOn => Sampler::AlwaysOn,
            SamplerChoice::AlwaysOff => Sampler::AlwaysOff,
            SamplerChoice::TraceIdRatio(r) => Sampler::TraceIdRatioBased(r),
            SamplerChoice::ParentBasedAlwaysOn => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
            SamplerChoice::ParentBasedAlwaysOff => {
                Sampler::ParentBased(Box::new(Sampler::AlwaysOff))
            }
            SamplerChoice::ParentBasedTraceIdRatio(r) => {
                Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(r)))
            }
        }
    }
}

/// The `OTEL_*` variables this build reads; any other is reported at start-up as ignored.
pub const KNOWN_OTEL_VARIABLES: [&str; 20] = [
    "OTEL_SDK_DISABLED",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_TRACES_EXPORTER",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_PROPAGATORS",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    "OTEL_EXPORTER_OTLP_TIMEOUT",
    "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
    // Read by the SDK's batch span processor itself.
    "OTEL_BSP_SCHEDULE_DELAY",
    "OTEL_BSP_EXPORT_TIMEOUT",
    "OTEL_BSP_MAX_QUEUE_SIZE",
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
    "OTEL_BSP_MAX_CONCURRENT_EXPORTS",
];

/// `OTEL_*` variables set in this process that this build does not read (metrics and logs
/// exporters, other SDKs' settings, typos), to be reported at start-up.
pub fn unknown_otel_variables() -> Vec<String> {
    let mut out: Vec<String> = std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .filter(|k| k.starts_with("OTEL_") && !KNOWN_OTEL_VARIABLES.contains(&k.as_str()))
        .collect();
    out.sort();
    out
}

/// The first of `vars` that is set: (its name, its value).
fn first_set(env: &Env<'_>, vars: &[&'static str]) -> Option<(&'static str, String)> {
    vars.iter()
        .find_map(|v| env.raw(v).map(|value| (*v, value.trim().to_owned())))
}

/// `key=value,key=value` (values percent-encoded, as the specification says).
fn pairs(var: &str, raw: &str) -> Result<Vec<(String, String)>, ConfigError> {
    raw.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            let (k, v) = p
                .split_once('=')
                .filter(|(k, _)| !k.trim().is_empty())
                .ok_or_else(|| {
                    ConfigError::new(
                        var,
                        raw,
                        format!("expected key=value pairs, comma-separated; {p:?} is not one"),
                    )
                })?;
            let v = url::form_urlencoded::parse(format!("v={}", v.trim()).as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default();
            Ok((k.trim().to_owned(), v))
        })
        .collect()
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
        let flag = |var: &str| -> Result<bool, ConfigError> {
            match env
                .raw(var)
                .map(|v| v.trim().to_ascii_lowercase())
                .as_deref()
            {
                None | Some("false") => Ok(false),
                Some("true") => Ok(true),
                Some(other) => Err(ConfigError::new(var, other, "expected true or false")),
            }
        };
        let sdk_disabled = flag("OTEL_SDK_DISABLED")?;
        let endpoint = first_set(
            env,
            &[
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "SMS_OTLP_ENDPOINT",
            ],
        );
        if let Some((var, url)) = &endpoint
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(ConfigError::new(
                var,
                url.clone(),
                "expected an http:// or https:// URL of an OTLP/gRPC collector",
            ));
        }
        let mut otlp_endpoint = endpoint.map(|(_, url)| url);
        match env
            .raw("OTEL_TRACES_EXPORTER")
            .map(|v| v.trim().to_ascii_lowercase())
            .as_deref()
        {
            None => {}
            Some("otlp") => {
                // The specification's default collector address.
                otlp_endpoint.get_or_insert_with(|| "http://localhost:4317".to_owned());
            }
            Some("none") => otlp_endpoint = None,
            Some(other) => {
                return Err(ConfigError::new(
                    "OTEL_TRACES_EXPORTER",
                    other,
                    "expected otlp or none (the only exporter built in is OTLP over gRPC)",
                ));
            }
        }
        if let Some((var, protocol)) = first_set(
            env,
            &[
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
                "OTEL_EXPORTER_OTLP_PROTOCOL",
            ],
        ) && protocol != "grpc"
        {
            return Err(ConfigError::new(
                var,
                protocol,
                "expected grpc (OTLP over HTTP is not built in; collectors take gRPC on 4317)",
            ));
        }
        if let Some(propagators) = env.raw("OTEL_PROPAGATORS") {
            for p in propagators
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
            {
                if !matches!(p, "tracecontext" | "baggage" | "none") {
                    return Err(ConfigError::new(
                        "OTEL_PROPAGATORS",
                        propagators.clone(),
                        format!(
                            "{p:?} is not built in; W3C tracecontext is what every service speaks"
                        ),
                    ));
                }
            }
        }
        let ratio = || -> Result<f64, ConfigError> {
            match env.raw("OTEL_TRACES_SAMPLER_ARG") {
                None => Ok(1.0),
                Some(v) => v
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|r| (0.0..=1.0).contains(r))
                    .ok_or_else(|| {
                        ConfigError::new(
                            "OTEL_TRACES_SAMPLER_ARG",
                            v.clone(),
                            "expected a ratio from 0 to 1",
                        )
                    }),
            }
        };
        let sampler = match env
            .raw("OTEL_TRACES_SAMPLER")
            .map(|v| v.trim().to_ascii_lowercase())
            .as_deref()
        {
            None | Some("parentbased_always_on") => SamplerChoice::ParentBasedAlwaysOn,
            Some("always_on") => SamplerChoice::AlwaysOn,
            Some("always_off") => SamplerChoice::AlwaysOff,
            Some("traceidratio") => SamplerChoice::TraceIdRatio(ratio()?),
            Some("parentbased_always_off") => SamplerChoice::ParentBasedAlwaysOff,
            Some("parentbased_traceidratio") => SamplerChoice::ParentBasedTraceIdRatio(ratio()?),
            Some(other) => {
                return Err(ConfigError::new(
                    "OTEL_TRACES_SAMPLER",
                    other,
                    "expected always_on, always_off, traceidratio, parentbased_always_on, \
                     parentbased_always_off or parentbased_traceidratio",
                ));
            }
        };
        let resource_attributes = match env.raw("OTEL_RESOURCE_ATTRIBUTES") {
            Some(raw) => pairs("OTEL_RESOURCE_ATTRIBUTES", &raw)?,
            None => Vec::new(),
        };
        let otlp_headers = match first_set(
            env,
            &[
                "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
                "OTEL_EXPORTER_OTLP_HEADERS",
            ],
        ) {
            Some((var, raw)) => {
                let headers = pairs(var, &raw)?;
                for (k, _) in &headers {
                    if tonic::metadata::MetadataKey::<tonic::metadata::Ascii>::from_bytes(
                        k.to_ascii_lowercase().as_bytes(),
                    )
                    .is_err()
                    {
                        return Err(ConfigError::new(
                            var,
                            "(hidden)",
                            format!("{k:?} is not a header name"),
                        ));
                    }
                }
                headers
            }
            None => Vec::new(),
        };
        let otlp_timeout = match first_set(
            env,
            &[
                "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
                "OTEL_EXPORTER_OTLP_TIMEOUT",
            ],
        ) {
            Some((var, v)) => Duration::from_millis(
                v.parse::<u64>()
                    .map_err(|_| ConfigError::new(var, v.clone(), "expected milliseconds"))?,
            ),
            None => Duration::from_secs(10),
        };
        let service_name = env.raw("OTEL_SERVICE_NAME").map(|s| s.trim().to_owned());
        Ok(TelemetryConfig {
            log,
            json,
            otlp_endpoint,
            service_name,
            resource_attributes,
            sampler,
            otlp_headers,
            otlp_timeout,
            sdk_disabled,
            context_without_export: false,
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
        let name = config
            .service_name
            .clone()
            .unwrap_or_else(|| service.to_owned());
        let mut resource = Resource::builder().with_service_name(name);
        for (k, v) in &config.resource_attributes {
            if k != "service.name" {
                resource = resource.with_attribute(KeyValue::new(k.clone(), v.clone()));
            }
        }
        let mut builder = SdkTracerProvider::builder()
            .with_resource(resource.build())
            .with_sampler(config.sampler.sampler());
        if let Some(endpoint) = config
            .otlp_endpoint
            .as_ref()
            .filter(|_| !config.sdk_disabled)
        {
            let mut metadata = tonic::metadata::MetadataMap::new();
            for (k, v) in &config.otlp_headers {
                if let (Ok(k), Ok(v)) = (
                    tonic::metadata::MetadataKey::from_bytes(k.to_ascii_lowercase().as_bytes()),
                    v.parse(),
                ) {
                    metadata.insert(k, v);
                }
            }
            match opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .with_timeout(config.otlp_timeout)
                .with_metadata(metadata)
                .build()
            {
                Ok(exporter) => builder = builder.with_batch_exporter(exporter),
                Err(e) => eprintln!("OTLP endpoint {endpoint:?}: cannot export traces: {e}"),
            }
        }
        let provider = builder.build();
        if INSTALLED.set(()).is_ok() {
            opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
            let filter = EnvFilter::try_new(&config.log).unwrap_or_else(|_| EnvFilter::new("info"));
            // With an exporter, every INFO span is an OpenTelemetry span whatever the log filter
            // says (quiet logs must not break the trace that follows a message). With none,
            // OpenTelemetry is not installed at all: no span bookkeeping, no trace context (the
            // pipeline benchmark measures the same with and without); tests that follow trace
            // context in one process ask for it anyway.
            //
            // The layer's filter is a plain level: with a filter function beside it (the spans
            // with an `otel.kind` only, once used for those tests), tracing-subscriber 0.3.23
            // lost the OpenTelemetry data of every span the log's own filter enabled too, after
            // the first from its call site — at the default `SMS_LOG=info`, no SendMessage span
            // and no trace context past the first call (issue 23; `traces` tests at `info`).
            let exporting = config.otlp_endpoint.is_some();
            let otel =
                (!config.sdk_disabled && (exporting || config.context_without_export)).then(|| {
                    // Cheap per poll: no OpenTelemetry context attached on every span entry
                    // (nothing here reads `Context::current`; parents come from tracing's
                    // own), no idle/busy timings, no thread names.
                    tracing_opentelemetry::layer()
                        .with_tracer(provider.tracer("sms"))
                        .with_context_activation(false)
                        .with_tracked_inactivity(false)
                        .with_threads(false)
                        .with_location(exporting)
                        .with_filter(LevelFilter::INFO)
                });
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
            let unknown = unknown_otel_variables();
            if !unknown.is_empty() {
                tracing::warn!(
                    variables = %unknown.join(", "),
                    "OpenTelemetry variables this service does not read are set; they have no effect \
                     (it exports traces over OTLP/gRPC only)"
                );
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

#[cfg(test)]
mod tests {
    use super::*;

    fn read(pairs: &[(&str, &str)]) -> Result<TelemetryConfig, ConfigError> {
        TelemetryConfig::from_env(&Env::from_pairs(pairs))
    }

    #[test]
    fn standard_variables_are_read() {
        let c = read(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
            ("OTEL_SERVICE_NAME", "composer-eu"),
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment=prod,team=sms%20core",
            ),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=abc"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
        ])
        .unwrap();
        assert_eq!(c.otlp_endpoint.as_deref(), Some("http://collector:4317"));
        assert_eq!(c.service_name.as_deref(), Some("composer-eu"));
        assert_eq!(c.sampler, SamplerChoice::ParentBasedTraceIdRatio(0.25));
        assert_eq!(c.resource_attributes[1], ("team".into(), "sms core".into()));
        assert_eq!(c.otlp_headers, vec![("x-api-key".into(), "abc".into())]);
        assert_eq!(c.otlp_timeout, Duration::from_millis(2500));
        // Ours still works, and the traces-specific variable wins over the general one.
        let ours = read(&[("SMS_OTLP_ENDPOINT", "http://a:4317")]).unwrap();
        assert_eq!(ours.otlp_endpoint.as_deref(), Some("http://a:4317"));
        let both = read(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:4317"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://b:4317"),
        ])
        .unwrap();
        assert_eq!(both.otlp_endpoint.as_deref(), Some("http://b:4317"));
        let none = read(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:4317"),
            ("OTEL_TRACES_EXPORTER", "none"),
        ])
        .unwrap();
        assert_eq!(none.otlp_endpoint, None);
        let default = read(&[("OTEL_TRACES_EXPORTER", "otlp")]).unwrap();
        assert_eq!(
            default.otlp_endpoint.as_deref(),
            Some("http://localhost:4317")
        );
        assert!(read(&[("OTEL_SDK_DISABLED", "true")]).unwrap().sdk_disabled);
    }

    #[test]
    fn unknown_values_name_their_variable() {
        let cases = [
            ("OTEL_TRACES_SAMPLER", "sometimes"),
            ("OTEL_TRACES_SAMPLER_ARG", "1.5"),
            ("OTEL_TRACES_EXPORTER", "zipkin"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317"),
            ("OTEL_SDK_DISABLED", "yes"),
            ("OTEL_PROPAGATORS", "b3"),
            ("OTEL_RESOURCE_ATTRIBUTES", "novalue"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "10s"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "bad header=1"),
        ];
        for (var, value) in cases {
            let mut pairs = vec![(var, value)];
            if var == "OTEL_TRACES_SAMPLER_ARG" {
                pairs.push(("OTEL_TRACES_SAMPLER", "traceidratio"));
            }
            let e = read(&pairs).expect_err(var);
            assert!(e.to_string().contains(var), "{var}: {e}");
        }
    }
}
