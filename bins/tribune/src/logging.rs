//! Process logging: the console (Consul's levels, text or JSON), with
//! `log_file` the same lines in rotating files (`logfile`), with
//! `enable_syslog` to the local syslog daemon (`syslog`), and the
//! `/v1/agent/monitor` feed, which has its own level so `monitor -log-level=debug`
//! works on an agent logging at info.

use std::fmt::Write as _;
use std::sync::Arc;
use tokio::sync::broadcast;
use tracing::field::{Field, Visit};
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;
use tribune_http_api::LogLine;

/// Our crates; the monitor sees them down to TRACE and dependencies from INFO.
const OUR_TARGETS: &[&str] = &[
    "tribune",
    "tribune_agent",
    "tribune_server",
    "tribune_http_api",
    "tribune_consensus",
    "tribune_state",
    "tribune_rpc",
    "tribune_kv",
];

/// Installs the global subscriber, writing what the console gets to `file`
/// too when there is one; returns the monitor feed's sender.
pub fn init(
    level: &str,
    json: bool,
    file: Option<Arc<crate::logfile::LogFile>>,
    syslog: Option<crate::syslog::Syslog>,
) -> broadcast::Sender<Arc<LogLine>> {
    let (tx, _) = broadcast::channel(1024);
    // Dependencies stay at info even when we log at debug/trace.
    // hickory-server logs every DNS request at info: far too chatty for a console.
    let directives = format!(
        "{level},h2=info,hyper=info,hyper_util=info,tower=info,tonic=info,hickory_server=warn,hickory_proto=warn"
    );
    let console_targets: Targets = directives
        .parse()
        .unwrap_or_else(|_| Targets::new().with_default(Level::INFO));
    let monitor_targets = OUR_TARGETS
        .iter()
        .fold(Targets::new().with_default(Level::INFO), |t, target| {
            t.with_target(*target, Level::TRACE)
        });
    let gate = Gate {
        console_max: max_level(&console_targets),
        console: console_targets.clone(),
        monitor: monitor_targets.clone(),
        tx: tx.clone(),
    };
    let text = (!json).then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stdout)
            .with_ansi(false)
    });
    let json_layer = json.then(|| {
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stdout)
    });
    let console = text
        .map(|l| l.boxed())
        .or_else(|| json_layer.map(|l| l.boxed()))
        .map(|l| l.with_filter(console_targets.clone()));
    // The same lines as the console, as Consul's file sink formats them.
    let file = file.map(|f| {
        let layer = if json {
            tracing_subscriber::fmt::layer()
                .json()
                .with_writer(f)
                .boxed()
        } else {
            tracing_subscriber::fmt::layer()
                .with_writer(f)
                .with_ansi(false)
                .boxed()
        };
        layer.with_filter(console_targets.clone())
    });
    let syslog = syslog.map(|s| SyslogLayer(s).with_filter(console_targets));
    // The gate goes on last, outermost: see [`Gate`].
    let _ = tracing_subscriber::registry()
        .with(console)
        .with(file)
        .with(syslog)
        .with(MonitorLayer { tx: tx.clone() }.with_filter(monitor_targets))
        .with(gate)
        .try_init();
    tx
}

/// The global filter in front of the per-layer ones: what the console logs,
/// plus what the monitor could show while someone is watching it.
///
/// Why a global layer: when every per-layer filter says no, tracing-subscriber's
/// registry still creates the span (`debug_spans_are_not_built_while_nobody_watches`
/// showed it), so with the monitor's `TRACE` for our crates every debug span and
/// event on the write path (the `raft.apply` span of every write among them) was
/// built and dropped. This layer answers `never` for what neither wants, `always`
/// for what the console logs, and `sometimes` for the monitor's extra levels,
/// which [`Layer::enabled`] then allows only while the feed has a receiver.
///
/// Why outermost: a layered subscriber asks its outer layer first and stops at
/// its "no", while a layer with a per-layer filter always passes the question
/// on (its filter only decides whether that layer sees the event). Under those
/// layers the gate was asked last, so every hit of our write path's `debug!`
/// (the gate's "sometimes") matched its target against each per-layer filter
/// before the gate said no. So did callsites the gate refuses outright, such
/// as h2's `trace!` on every frame: an absent optional layer (no log file, no
/// syslog) above a per-layer filter turns an inner "never" into "sometimes".
/// Profiles of a KV write load put ~3% of each server's samples in that
/// matching; moving the gate out cut the cluster's total CPU per write by ~12%
/// (BENCHMARKS.md, fifteenth session).
struct Gate {
    console: Targets,
    /// The most verbose level `console` enables for any target.
    console_max: LevelFilter,
    monitor: Targets,
    tx: broadcast::Sender<Arc<LogLine>>,
}

/// The most verbose level `targets` enables anywhere.
fn max_level(targets: &Targets) -> LevelFilter {
    targets
        .iter()
        .map(|(_, level)| level)
        .chain(targets.default_level())
        .max()
        .unwrap_or(LevelFilter::OFF)
}

impl<S: Subscriber> Layer<S> for Gate {
    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        if self.console.would_enable(meta.target(), meta.level()) {
            Interest::always()
        } else if self.monitor.would_enable(meta.target(), meta.level()) {
            Interest::sometimes()
        } else {
            Interest::never()
        }
    }

    fn enabled(&self, meta: &Metadata<'_>, _cx: Context<'_, S>) -> bool {
        // Asked at every hit of a "sometimes" callsite (every write passes some):
        // a level comparison and a receiver count settle the usual case before
        // any target is matched.
        (*meta.level() <= self.console_max
            && self.console.would_enable(meta.target(), meta.level()))
            || (self.tx.receiver_count() > 0
                && self.monitor.would_enable(meta.target(), meta.level()))
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(LevelFilter::TRACE)
    }
}

struct MonitorLayer {
    tx: broadcast::Sender<Arc<LogLine>>,
}

#[derive(Default)]
struct Fields {
    message: String,
    pairs: Vec<(String, String)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_owned();
        } else {
            self.pairs.push((field.name().to_owned(), value.to_owned()));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            self.pairs
                .push((field.name().to_owned(), format!("{value:?}")));
        }
    }
}

/// hclog's module name: `tribune_agent::anti_entropy` → `agent.anti_entropy`.
fn module(target: &str) -> String {
    let t = target.strip_prefix("tribune_").unwrap_or(target);
    t.replace("::", ".")
}

/// One event as Consul's logger renders it.
struct Rendered {
    /// 0 trace … 4 error.
    level: u8,
    name: &'static str,
    ts: String,
    module: String,
    /// The message and its fields (`message: k=v`).
    body: String,
    fields: Fields,
}

fn render(event: &Event<'_>) -> Rendered {
    let meta = event.metadata();
    let mut fields = Fields::default();
    event.record(&mut fields);
    let (level, name) = match *meta.level() {
        Level::TRACE => (0, "TRACE"),
        Level::DEBUG => (1, "DEBUG"),
        Level::INFO => (2, "INFO"),
        Level::WARN => (3, "WARN"),
        Level::ERROR => (4, "ERROR"),
    };
    let mut ts = String::new();
    let _ = SystemTime.format_time(&mut Writer::new(&mut ts));
    let mut body = fields.message.clone();
    if !fields.pairs.is_empty() {
        body.push(':');
        for (k, v) in &fields.pairs {
            let _ = write!(body, " {k}={v}");
        }
    }
    Rendered {
        level,
        name,
        ts,
        module: module(meta.target()),
        body,
        fields,
    }
}

impl<S: Subscriber> Layer<S> for MonitorLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        // Nothing to do unless someone is watching: logging must stay cheap.
        if self.tx.receiver_count() == 0 {
            return;
        }
        let Rendered {
            level,
            name,
            ts,
            module,
            body,
            fields,
        } = render(event);
        // hclog's layout: the bracketed level padded to 8 columns.
        let text = format!("{ts} {:<8}{module}: {body}", format!("[{name}]"));
        let mut obj = serde_json::Map::new();
        obj.insert("@level".into(), name.to_ascii_lowercase().into());
        obj.insert("@message".into(), fields.message.into());
        obj.insert("@module".into(), module.into());
        obj.insert("@timestamp".into(), ts.into());
        for (k, v) in fields.pairs {
            obj.insert(k, v.into());
        }
        let line = LogLine {
            level,
            text,
            json: serde_json::Value::Object(obj).to_string(),
        };
        let _ = self.tx.send(Arc::new(line));
    }
}

/// `enable_syslog`: what the console logs, to the local syslog daemon.
struct SyslogLayer(crate::syslog::Syslog);

impl<S: Subscriber> Layer<S> for SyslogLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let r = render(event);
        let text = format!("{}: {}", r.module, r.body);
        self.0.send(r.level, &text, std::time::SystemTime::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// The console's filter, counting how often it is asked about a hit
    /// (`enabled`), not about a callsite's registration: other tests'
    /// dispatchers coming and going re-register callsites at any time.
    struct Counting {
        targets: Targets,
        asked: Arc<AtomicUsize>,
    }

    impl<S> tracing_subscriber::layer::Filter<S> for Counting {
        fn enabled(&self, meta: &Metadata<'_>, _: &Context<'_, S>) -> bool {
            self.asked.fetch_add(1, Ordering::Relaxed);
            self.targets.would_enable(meta.target(), meta.level())
        }

        fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
            if self.targets.would_enable(meta.target(), meta.level()) {
                Interest::always()
            } else {
                Interest::never()
            }
        }
    }

    /// The gate and filters as `init` composes them, an absent log file and
    /// syslog included, for a scoped dispatcher. Also returns how often the
    /// console's filter was asked about a hit.
    fn subscriber(
        level: &str,
    ) -> (
        impl Subscriber,
        broadcast::Sender<Arc<LogLine>>,
        Arc<AtomicUsize>,
    ) {
        let (tx, _) = broadcast::channel(16);
        let console: Targets = level.parse().expect("level");
        let monitor = Targets::new()
            .with_default(Level::INFO)
            .with_target("tribune_server", Level::TRACE);
        let gate = Gate {
            console_max: max_level(&console),
            console: console.clone(),
            monitor: monitor.clone(),
            tx: tx.clone(),
        };
        let asked = Arc::new(AtomicUsize::new(0));
        let console = Counting {
            targets: console,
            asked: asked.clone(),
        };
        let absent = None::<tracing_subscriber::layer::Identity>;
        let sub = tracing_subscriber::registry()
            .with(tracing_subscriber::fmt::layer().with_filter(console))
            .with(absent.clone())
            .with(absent)
            .with(MonitorLayer { tx: tx.clone() }.with_filter(monitor))
            .with(gate);
        (sub, tx, asked)
    }

    #[test]
    fn what_the_gate_refuses_never_reaches_the_per_layer_filters() {
        let (sub, tx, asked) = subscriber("info");
        // Refused outright (and "never" though absent layers sit above a
        // per-layer filter), and refused while nobody watches the monitor.
        let hits = || {
            tracing::trace!(target: "h2", "frame");
            tracing::debug!(target: "tribune_server::server", "write");
        };
        tracing::subscriber::with_default(sub, || {
            for _ in 0..3 {
                hits();
            }
            assert_eq!(asked.load(Ordering::Relaxed), 0);
            // With a watcher the gate lets the debug event through, and the
            // filters are asked: the count does see hits.
            let _rx = tx.subscribe();
            hits();
            assert_eq!(asked.load(Ordering::Relaxed), 1);
        });
    }

    fn debug_span_built() -> bool {
        !tracing::debug_span!(target: "tribune_server::server", "raft.apply").is_disabled()
    }

    #[test]
    fn debug_spans_are_not_built_while_nobody_watches() {
        let (sub, tx, _) = subscriber("info");
        tracing::subscriber::with_default(sub, || {
            assert!(!debug_span_built());
            let mut rx = tx.subscribe();
            assert!(debug_span_built());
            tracing::debug!(target: "tribune_server::server", "seen");
            assert!(rx.try_recv().is_ok_and(|l| l.text.contains("seen")));
            drop(rx);
            assert!(!debug_span_built());
            // Dependencies stay off below info for the monitor too.
            let _rx = tx.subscribe();
            assert!(tracing::debug_span!(target: "h2", "x").is_disabled());
        });
    }

    #[test]
    fn a_console_at_debug_builds_them_anyway() {
        let (sub, _tx, _) = subscriber("debug");
        tracing::subscriber::with_default(sub, || assert!(debug_span_built()));
    }
}
