//! A checker of CloudWatch Embedded Metric Format lines, as CloudWatch reads them: the tests hold
//! every line a handler prints to it.

use serde_json::Value;

use nylas_sync::metrics::MAX_VALUES_PER_METRIC;

/// One metric of an EMF line, as [`validate_line`] read it.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedMetric {
    pub name: String,
    /// The dimension keys of the directive that lists it (`Function` first).
    pub dimensions: Vec<String>,
    pub values: Vec<f64>,
}

/// Checks that `line` is a valid EMF document: `_aws.Timestamp` in Unix milliseconds, a
/// namespace, every dimension a string member, every metric a number (or up to 100 numbers)
/// member. Returns every metric of every directive, or what is wrong.
pub fn validate_line(line: &str) -> Result<Vec<ParsedMetric>, String> {
    let doc: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let root = doc.as_object().ok_or("not a JSON object")?;
    let aws = root
        .get("_aws")
        .and_then(Value::as_object)
        .ok_or("no _aws object")?;
    let ts = aws
        .get("Timestamp")
        .and_then(Value::as_i64)
        .ok_or("_aws.Timestamp is not an integer")?;
    // Milliseconds: between 2001 and 2286 (seconds would be ~1.7e9, far below).
    if !(1_000_000_000_000..10_000_000_000_000).contains(&ts) {
        return Err(format!("_aws.Timestamp {ts} is not Unix milliseconds"));
    }
    let directives = aws
        .get("CloudWatchMetrics")
        .and_then(Value::as_array)
        .filter(|d| !d.is_empty())
        .ok_or("_aws.CloudWatchMetrics is not a non-empty array")?;
    let mut out = Vec::new();
    for d in directives {
        let namespace = d
            .get("Namespace")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if namespace.is_empty() || namespace.len() > 255 {
            return Err("a directive has no Namespace".into());
        }
        let sets = d
            .get("Dimensions")
            .and_then(Value::as_array)
            .ok_or("a directive has no Dimensions array")?;
        let mut dims_of_directive = Vec::new();
        for set in sets {
            let set = set.as_array().ok_or("a dimension set is not an array")?;
            if set.is_empty() || set.len() > 30 {
                return Err("a dimension set must hold 1 to 30 keys".into());
            }
            for key in set {
                let key = key.as_str().ok_or("a dimension key is not a string")?;
                match root.get(key) {
                    Some(Value::String(_)) => dims_of_directive.push(key.to_string()),
                    _ => return Err(format!("dimension {key} is not a string member")),
                }
            }
        }
        let metrics = d
            .get("Metrics")
            .and_then(Value::as_array)
            .filter(|m| !m.is_empty() && m.len() <= 100)
            .ok_or("a directive needs 1 to 100 Metrics")?;
        for m in metrics {
            let name = m
                .get("Name")
                .and_then(Value::as_str)
                .ok_or("a metric has no Name")?;
            if let Some(unit) = m.get("Unit") {
                if !unit.is_string() {
                    return Err(format!("{name}: Unit is not a string"));
                }
            }
            let values: Vec<f64> = match root.get(name) {
                Some(Value::Number(n)) => vec![n.as_f64().ok_or("not a number")?],
                Some(Value::Array(a)) if !a.is_empty() && a.len() <= MAX_VALUES_PER_METRIC => a
                    .iter()
                    .map(|v| v.as_f64().ok_or(format!("{name}: a value is not a number")))
                    .collect::<Result<_, _>>()?,
                _ => return Err(format!("metric {name} has no numeric member")),
            };
            out.push(ParsedMetric {
                name: name.to_string(),
                dimensions: dims_of_directive.clone(),
                values,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_validator_rejects_what_cloudwatch_would() {
        let ok = r#"{"_aws":{"Timestamp":1767225600000,"CloudWatchMetrics":[{"Namespace":"N","Dimensions":[["Function"]],"Metrics":[{"Name":"A","Unit":"Count"}]}]},"Function":"f","A":1}"#;
        assert!(validate_line(ok).is_ok());
        let seconds = ok.replace("1767225600000", "1767225600");
        assert!(validate_line(&seconds)
            .unwrap_err()
            .contains("milliseconds"));
        let no_value = ok.replace(r#","A":1"#, "");
        assert!(validate_line(&no_value).unwrap_err().contains("A"));
        let no_dim = ok.replace(r#","Function":"f""#, "");
        assert!(validate_line(&no_dim).unwrap_err().contains("Function"));
        let no_ns = ok.replace(r#""Namespace":"N","#, "");
        assert!(validate_line(&no_ns).is_err());
    }
}
