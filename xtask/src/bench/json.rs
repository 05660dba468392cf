//! criterion's result files, read with `serde_json`: `estimates.json` (the median and its
//! confidence interval) and `benchmark.json` (the throughput, if any).
//!
//! Only the fields the report uses are declared; serde skips the others, so a criterion
//! that writes more still reads. Numbers are `f64`, which is all criterion writes (its
//! throughput counts are integers, which read as `f64` too).

use serde::Deserialize;

/// `estimates.json`: of all the estimates criterion writes, the median.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub(crate) struct Estimates {
    pub(crate) median: Estimate,
}

/// One estimate: the point and, if criterion wrote it, its confidence interval.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub(crate) struct Estimate {
    pub(crate) point_estimate: f64,
    #[serde(default)]
    pub(crate) confidence_interval: Option<ConfidenceInterval>,
}

/// The bounds of a confidence interval; each one may be missing.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub(crate) struct ConfidenceInterval {
    pub(crate) lower_bound: Option<f64>,
    pub(crate) upper_bound: Option<f64>,
}

/// `benchmark.json`: the throughput, `null` or absent when the bench declared none.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub(crate) struct Benchmark {
    #[serde(default)]
    pub(crate) throughput: Option<Throughput>,
}

/// criterion's `Throughput` enum as serde writes it, `{"Elements": n}` or `{"Bytes": n}`.
/// The other kinds (`Bits`, `BytesDecimal`, ...) leave both fields `None`: the report has
/// no column for them.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub(crate) struct Throughput {
    #[serde(rename = "Elements")]
    pub(crate) elements: Option<f64>,
    #[serde(rename = "Bytes")]
    pub(crate) bytes: Option<f64>,
}

impl Estimates {
    /// Parses an `estimates.json`; the error names the file and what was wrong.
    pub(crate) fn parse(text: &str) -> Result<Estimates, String> {
        serde_json::from_str(text).map_err(|e| format!("estimates.json: {e}"))
    }
}

impl Benchmark {
    /// Parses a `benchmark.json`; the error names the file and what was wrong.
    pub(crate) fn parse(text: &str) -> Result<Benchmark, String> {
        serde_json::from_str(text).map_err(|e| format!("benchmark.json: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::{Benchmark, ConfidenceInterval, Estimates, Throughput};

    /// Verbatim from a criterion 0.8 run (`fill/ptools/256MiB/new/estimates.json`).
    const ESTIMATES: &str = r#"{"mean":{"confidence_interval":{"confidence_level":0.95,"lower_bound":414579634.91,"upper_bound":500604560.1312499},"point_estimate":454347854.75,"standard_error":22183857.28933658},"median":{"confidence_interval":{"confidence_level":0.95,"lower_bound":397296833.0,"upper_bound":512345483.25},"point_estimate":435033346.5,"standard_error":24298820.185600795},"median_abs_dev":{"confidence_interval":{"confidence_level":0.95,"lower_bound":10898424.502064288,"upper_bound":115091580.99076599},"point_estimate":51774507.86296874,"standard_error":25369765.58059726},"slope":null,"std_dev":{"confidence_interval":{"confidence_level":0.95,"lower_bound":25879677.881968323,"upper_bound":92696720.91396227},"point_estimate":73937612.71076661,"standard_error":17119067.63080091}}"#;

    #[test]
    fn reads_the_median_not_the_median_abs_dev() {
        let e = Estimates::parse(ESTIMATES).unwrap();
        assert_eq!(e.median.point_estimate, 435033346.5);
        assert_eq!(
            e.median.confidence_interval,
            Some(ConfidenceInterval {
                lower_bound: Some(397296833.0),
                upper_bound: Some(512345483.25),
            })
        );
    }

    #[test]
    fn a_median_without_interval_or_bounds_still_reads() {
        let e = Estimates::parse(r#"{"median":{"point_estimate":12.5}}"#).unwrap();
        assert_eq!(e.median.point_estimate, 12.5);
        assert_eq!(e.median.confidence_interval, None);
        let e = Estimates::parse(
            r#"{"median":{"point_estimate":1,"confidence_interval":{"lower_bound":0.5}}}"#,
        )
        .unwrap();
        let ci = e.median.confidence_interval.unwrap();
        assert_eq!((ci.lower_bound, ci.upper_bound), (Some(0.5), None));
    }

    #[test]
    fn reads_throughput_and_skips_what_it_does_not_use() {
        // The shape criterion 0.8 writes, with escapes in the id.
        let b = Benchmark::parse(
            r#" {"group_id":"fill","function_id":null,"value_str":"a\/b \"c\" \u00e9","full_id":"fill/x","directory_name":"fill/x","title":"fill/x","throughput":{"Elements":1000000},"x":[1,-2.5e3,true,[]]} "#,
        )
        .unwrap();
        assert_eq!(
            b.throughput,
            Some(Throughput {
                elements: Some(1e6),
                bytes: None,
            })
        );
        let b = Benchmark::parse(r#"{"throughput":{"Bytes":4096}}"#).unwrap();
        assert_eq!(b.throughput.and_then(|t| t.bytes), Some(4096.0));
        for none in [r#"{"throughput":null}"#, "{}"] {
            assert_eq!(Benchmark::parse(none).unwrap().throughput, None, "{none}");
        }
        // A kind the report has no column for reads as neither.
        let bits = Benchmark::parse(r#"{"throughput":{"Bits":8}}"#).unwrap();
        assert_eq!(
            bits.throughput,
            Some(Throughput {
                elements: None,
                bytes: None,
            })
        );
    }

    #[test]
    fn rejects_broken_documents_and_a_missing_median() {
        for bad in [
            "",
            "{",
            r#"{"a":}"#,
            "[1,]",
            r#"{"median":{"point_estimate":1}} x"#,
            r#""open"#,
            "nul",
            "{}",
            r#"{"median":null}"#,
            r#"{"median":{"point_estimate":"fast"}}"#,
        ] {
            let err = Estimates::parse(bad).expect_err(bad);
            assert!(err.starts_with("estimates.json: "), "{err}");
        }
    }
}
