//! A [`Batch`] as the bodies of OTLP/HTTP requests: `ExportLogsServiceRequest` and
//! `ExportMetricsServiceRequest` of opentelemetry-proto (`opentelemetry/proto/collector/*/v1`),
//! in protobuf's binary encoding or in OTLP/JSON (proto3's JSON mapping with OTLP's rules:
//! lowerCamelCase names, 64-bit integers as strings, enums as numbers).
//!
//! ccb encodes the few messages it sends by hand (the field numbers are below, from the .proto
//! files of opentelemetry-proto v1.5.0) rather than building them with prost: a few hundred
//! lines instead of a code generator and its build step. `tests/otlp.rs` decodes what ccb sends
//! with the official definitions (PyPI's opentelemetry-proto), so a wrong number cannot pass.

use super::{Attrs, Batch, HistPoint, LogRecord, SumPoint, Value, SCHEMA_URL, TOKEN_BOUNDS};
use serde_json::{json, Map, Value as Json};

/// The instrumentation scope: ccb itself.
const SCOPE: &str = "ccb";
/// `SeverityNumber.SEVERITY_NUMBER_INFO`.
const SEVERITY_INFO: u64 = 9;
/// `AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA`.
const DELTA: u64 = 1;

/// The two request bodies of a batch; the logs body is None when the batch has no record, the
/// metrics body when it has no point.
pub fn encode(b: &Batch, json: bool, version: &str) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    let logs = (!b.logs.is_empty()).then(|| if json { logs_json(b, version) } else { logs_proto(b, version) });
    let has_points = !b.cost.is_empty() || !b.tokens.is_empty();
    let metrics = has_points.then(|| if json { metrics_json(b, version) } else { metrics_proto(b, version) });
    (logs, metrics)
}

/// Protobuf's wire format, for the few types used.
#[derive(Default)]
struct Pb(Vec<u8>);

impl Pb {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }
    fn tag(&mut self, field: u32, wire: u8) {
        self.varint(((field as u64) << 3) | wire as u64);
    }
    fn uint(&mut self, field: u32, v: u64) {
        if v != 0 {
            self.tag(field, 0);
            self.varint(v);
        }
    }
    /// int64 (two's complement as a varint; not zigzag).
    fn int(&mut self, field: u32, v: i64) {
        self.tag(field, 0);
        self.varint(v as u64);
    }
    fn boolean(&mut self, field: u32, v: bool) {
        self.tag(field, 0);
        self.varint(v as u64);
    }
    fn fixed64(&mut self, field: u32, v: u64) {
        self.tag(field, 1);
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn double(&mut self, field: u32, v: f64) {
        self.tag(field, 1);
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, field: u32, v: &[u8]) {
        self.tag(field, 2);
        self.varint(v.len() as u64);
        self.0.extend_from_slice(v);
    }
    fn string(&mut self, field: u32, v: &str) {
        if !v.is_empty() {
            self.bytes(field, v.as_bytes());
        }
    }
    fn message(&mut self, field: u32, f: impl FnOnce(&mut Pb)) {
        let mut inner = Pb::default();
        f(&mut inner);
        self.bytes(field, &inner.0);
    }
}

/// `common.v1.AnyValue`: string 1, bool 2, int 3, double 4.
fn any_pb(p: &mut Pb, v: &Value) {
    match v {
        Value::Str(s) => p.bytes(1, s.as_bytes()),
        Value::Bool(b) => p.boolean(2, *b),
        Value::Int(i) => p.int(3, *i),
        Value::Double(d) => p.double(4, *d),
    }
}

/// `common.v1.KeyValue`: key 1, value 2.
fn attrs_pb(p: &mut Pb, field: u32, attrs: &Attrs) {
    for (k, v) in attrs {
        p.message(field, |kv| {
            kv.string(1, k);
            kv.message(2, |a| any_pb(a, v));
        });
    }
}

/// `resource.v1.Resource` (attributes 1) and `common.v1.InstrumentationScope` (name 1,
/// version 2) of a `Resource{Logs,Metrics}` (resource 1, scope_{logs,metrics} 2, schema_url 3),
/// whose `Scope{Logs,Metrics}` has scope 1, records 2, schema_url 3.
fn resource_pb(p: &mut Pb, b: &Batch, version: &str, records: impl FnOnce(&mut Pb)) {
    p.message(1, |r| {
        r.message(1, |res| attrs_pb(res, 1, &b.resource));
        r.message(2, |sl| {
            sl.message(1, |sc| {
                sc.string(1, SCOPE);
                sc.string(2, version);
            });
            records(sl);
            sl.string(3, SCHEMA_URL);
        });
        r.string(3, SCHEMA_URL);
    });
}

/// `logs.v1.LogRecord`: time_unix_nano 1 (fixed64), severity_number 2, severity_text 3, body 5,
/// attributes 6, observed_time_unix_nano 11 (fixed64), event_name 12.
fn log_pb(p: &mut Pb, r: &LogRecord) {
    p.fixed64(1, r.time_ns);
    p.uint(2, SEVERITY_INFO);
    p.string(3, "INFO");
    p.message(5, |b| any_pb(b, &Value::Str(r.event_name.into())));
    attrs_pb(p, 6, &r.attrs);
    p.fixed64(11, r.observed_ns);
    p.string(12, r.event_name);
}

fn logs_proto(b: &Batch, version: &str) -> Vec<u8> {
    let mut p = Pb::default();
    // ExportLogsServiceRequest.resource_logs 1
    resource_pb(&mut p, b, version, |sl| {
        for r in &b.logs {
            sl.message(2, |lr| log_pb(lr, r));
        }
    });
    p.0
}

/// `metrics.v1.NumberDataPoint`: start 2, time 3 (fixed64), as_double 4, attributes 7.
fn sum_point_pb(p: &mut Pb, b: &Batch, pt: &SumPoint) {
    p.fixed64(2, b.start_ns);
    p.fixed64(3, b.end_ns);
    p.double(4, pt.value);
    attrs_pb(p, 7, &pt.attrs);
}

/// `metrics.v1.HistogramDataPoint`: start 2, time 3, count 4 (fixed64), sum 5 (double),
/// bucket_counts 6 (packed fixed64), explicit_bounds 7 (packed double), attributes 9, min 11,
/// max 12.
fn hist_point_pb(p: &mut Pb, b: &Batch, pt: &HistPoint) {
    p.fixed64(2, b.start_ns);
    p.fixed64(3, b.end_ns);
    p.fixed64(4, pt.count);
    p.double(5, pt.sum);
    let counts: Vec<u8> = pt.buckets.iter().flat_map(|c| c.to_le_bytes()).collect();
    p.bytes(6, &counts);
    let bounds: Vec<u8> = TOKEN_BOUNDS.iter().flat_map(|c| c.to_le_bytes()).collect();
    p.bytes(7, &bounds);
    attrs_pb(p, 9, &pt.attrs);
    p.double(11, pt.min);
    p.double(12, pt.max);
}

/// `metrics.v1.Metric`: name 1, description 2, unit 3, sum 7 (points 1, temporality 2,
/// is_monotonic 3), histogram 9 (points 1, temporality 2).
fn metrics_proto(b: &Batch, version: &str) -> Vec<u8> {
    let mut p = Pb::default();
    resource_pb(&mut p, b, version, |sm| {
        if !b.cost.is_empty() {
            sm.message(2, |m| {
                m.string(1, COST.0);
                m.string(2, COST.1);
                m.string(3, COST.2);
                m.message(7, |sum| {
                    for pt in &b.cost {
                        sum.message(1, |d| sum_point_pb(d, b, pt));
                    }
                    sum.uint(2, DELTA);
                    sum.boolean(3, true);
                });
            });
        }
        if !b.tokens.is_empty() {
            sm.message(2, |m| {
                m.string(1, TOKENS.0);
                m.string(2, TOKENS.1);
                m.string(3, TOKENS.2);
                m.message(9, |h| {
                    for pt in &b.tokens {
                        h.message(1, |d| hist_point_pb(d, b, pt));
                    }
                    h.uint(2, DELTA);
                });
            });
        }
    });
    p.0
}

/// Name, description, unit.
const COST: (&str, &str, &str) = ("ccb.cost.usd", "Cost of model calls, as ccb's ledger records it", "USD");
const TOKENS: (&str, &str, &str) = ("gen_ai.client.token.usage", "Tokens per model call, by kind", "{token}");

fn any_json(v: &Value) -> Json {
    match v {
        Value::Str(s) => json!({ "stringValue": s }),
        Value::Bool(b) => json!({ "boolValue": b }),
        Value::Int(i) => json!({ "intValue": i.to_string() }),
        Value::Double(d) => json!({ "doubleValue": d }),
    }
}

fn attrs_json(attrs: &Attrs) -> Json {
    Json::Array(attrs.iter().map(|(k, v)| json!({ "key": k, "value": any_json(v) })).collect())
}

/// `{resource, scopeX: [{scope, X, schemaUrl}], schemaUrl}` for X = logRecords or metrics.
fn resource_json(b: &Batch, version: &str, scope_key: &str, key: &str, items: Vec<Json>) -> Json {
    let mut scope = Map::new();
    scope.insert("scope".into(), json!({ "name": SCOPE, "version": version }));
    scope.insert(key.into(), Json::Array(items));
    scope.insert("schemaUrl".into(), json!(SCHEMA_URL));
    let mut r = Map::new();
    r.insert("resource".into(), json!({ "attributes": attrs_json(&b.resource) }));
    r.insert(scope_key.into(), Json::Array(vec![Json::Object(scope)]));
    r.insert("schemaUrl".into(), json!(SCHEMA_URL));
    Json::Object(r)
}

fn logs_json(b: &Batch, version: &str) -> Vec<u8> {
    let records = b
        .logs
        .iter()
        .map(|r| {
            json!({
                "timeUnixNano": r.time_ns.to_string(),
                "observedTimeUnixNano": r.observed_ns.to_string(),
                "severityNumber": SEVERITY_INFO,
                "severityText": "INFO",
                "body": { "stringValue": r.event_name },
                "attributes": attrs_json(&r.attrs),
                "eventName": r.event_name,
            })
        })
        .collect();
    let v = json!({ "resourceLogs": [resource_json(b, version, "scopeLogs", "logRecords", records)] });
    serde_json::to_vec(&v).unwrap_or_default()
}

fn metrics_json(b: &Batch, version: &str) -> Vec<u8> {
    let (start, end) = (b.start_ns.to_string(), b.end_ns.to_string());
    let mut metrics = Vec::new();
    if !b.cost.is_empty() {
        let points: Vec<Json> = b
            .cost
            .iter()
            .map(|pt| {
                json!({
                    "attributes": attrs_json(&pt.attrs),
                    "startTimeUnixNano": start,
                    "timeUnixNano": end,
                    "asDouble": pt.value,
                })
            })
            .collect();
        metrics.push(json!({
            "name": COST.0, "description": COST.1, "unit": COST.2,
            "sum": { "dataPoints": points, "aggregationTemporality": DELTA, "isMonotonic": true },
        }));
    }
    if !b.tokens.is_empty() {
        let points: Vec<Json> = b
            .tokens
            .iter()
            .map(|pt| {
                json!({
                    "attributes": attrs_json(&pt.attrs),
                    "startTimeUnixNano": start,
                    "timeUnixNano": end,
                    "count": pt.count.to_string(),
                    "sum": pt.sum,
                    "bucketCounts": pt.buckets.iter().map(u64::to_string).collect::<Vec<_>>(),
                    "explicitBounds": TOKEN_BOUNDS,
                    "min": pt.min,
                    "max": pt.max,
                })
            })
            .collect();
        metrics.push(json!({
            "name": TOKENS.0, "description": TOKENS.1, "unit": TOKENS.2,
            "histogram": { "dataPoints": points, "aggregationTemporality": DELTA },
        }));
    }
    let v = json!({ "resourceMetrics": [resource_json(b, version, "scopeMetrics", "metrics", metrics)] });
    serde_json::to_vec(&v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_fixed_fields_are_protobufs() {
        let mut p = Pb::default();
        p.uint(1, 300);
        assert_eq!(p.0, [0x08, 0xac, 0x02]);
        let mut p = Pb::default();
        p.int(3, -1);
        assert_eq!(p.0.len(), 11, "a negative int64 is ten bytes of varint after its tag");
        let mut p = Pb::default();
        p.fixed64(1, 1);
        assert_eq!(p.0, [0x09, 1, 0, 0, 0, 0, 0, 0, 0]);
        let mut p = Pb::default();
        p.message(2, |m| m.string(1, "ab"));
        assert_eq!(p.0, [0x12, 4, 0x0a, 2, b'a', b'b']);
        let mut p = Pb::default();
        p.uint(2, 0);
        p.string(3, "");
        assert!(p.0.is_empty(), "defaults are not written");
    }

    #[test]
    fn an_empty_batch_sends_nothing() {
        let b =
            Batch { resource: vec![], logs: vec![], start_ns: 0, end_ns: 0, cost: vec![], tokens: vec![], calls: 0 };
        assert_eq!(encode(&b, true, "1"), (None, None));
        assert_eq!(encode(&b, false, "1"), (None, None));
    }
}
