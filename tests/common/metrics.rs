//! Reading `/metrics` as Prometheus would: the text parsed by a parser crate, then one value.

/// `text` (Prometheus/OpenMetrics exposition format), parsed; panics when it does not parse.
pub fn parse(text: &str) -> prometheus_parse::Scrape {
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("metrics parse as Prometheus text")
}

/// The sum of `metric`'s samples whose labels include `labels` (0 when there are none).
pub fn sample(scrape: &prometheus_parse::Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => *v,
            other => panic!("{metric} is not a plain value: {other:?}"),
        })
        .sum()
}
