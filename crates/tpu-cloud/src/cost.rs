//! What a run cost: billed TPU time times a price per hour, plus GCS
//! storage per month. Prices come from a table the caller can replace,
//! and the table says where its numbers come from.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::api::Provisioning;

/// Where the built-in prices come from.
pub const RUNBOOK_SOURCE: &str = "upstream runbook profiling-infrastructure-setup.md (prices not verified against Cloud Billing)";

/// Standard storage, dollars per GB-month (upstream: 87 MB ~ $0.002/month).
pub const GCS_USD_PER_GB_MONTH: f64 = 0.020;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// `v6e-1`, or a family with a chip count of 1 (`v6e-1`) used per chip
    /// for larger slices of the same family (`v6e-8` = 8 x `v6e-1`).
    pub accelerator_type: String,
    pub provisioning: Provisioning,
    pub usd_per_hour: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceTable {
    /// Stated in the report next to the Cost Summary.
    pub source: String,
    pub prices: Vec<Price>,
}

impl PriceTable {
    /// v6e-1: $1.90/h on demand, $0.64/h spot or preemptible.
    pub fn runbook_defaults() -> PriceTable {
        let price = |provisioning, usd_per_hour| Price {
            accelerator_type: "v6e-1".to_owned(),
            provisioning,
            usd_per_hour,
        };
        PriceTable {
            source: RUNBOOK_SOURCE.to_owned(),
            prices: vec![
                price(Provisioning::OnDemand, 1.90),
                price(Provisioning::Spot, 0.64),
                price(Provisioning::Preemptible, 0.64),
            ],
        }
    }

    /// Reads `{"source": "...", "prices": [{"accelerator_type", "provisioning", "usd_per_hour"}]}`.
    pub fn from_json(text: &str) -> Result<PriceTable, Error> {
        serde_json::from_str(text).map_err(|err| Error::BadPriceTable {
            detail: err.to_string(),
        })
    }

    /// Dollars per hour, exact match first, then per chip of the `-1` entry
    /// of the same family (`v6e-4` = 4 x `v6e-1`).
    pub fn usd_per_hour(&self, accelerator_type: &str, provisioning: Provisioning) -> Option<f64> {
        let find = |ty: &str| {
            self.prices
                .iter()
                .find(|p| p.accelerator_type == ty && p.provisioning == provisioning)
                .map(|p| p.usd_per_hour)
        };
        if let Some(price) = find(accelerator_type) {
            return Some(price);
        }
        let (family, count) = accelerator_type.rsplit_once('-')?;
        let count: f64 = count.parse::<u32>().ok()?.into();
        // Only families whose suffix counts chips.
        if !matches!(family, "v6e" | "v5litepod" | "v5e") {
            return None;
        }
        Some(find(&format!("{family}-1"))? * count)
    }
}

/// One row of the Cost Summary.
#[derive(Clone, Debug, PartialEq)]
pub struct CostLine {
    pub resource: String,
    pub duration: String,
    pub cost_usd: f64,
    /// `/month` for storage, empty otherwise.
    pub unit: String,
}

/// `TPU v6e-1 (on-demand)`, billed time, dollars.
pub fn tpu_line(
    accelerator_type: &str,
    provisioning: Provisioning,
    billed: Duration,
    usd_per_hour: f64,
) -> CostLine {
    CostLine {
        resource: format!("TPU {accelerator_type} ({})", provisioning.as_str()),
        duration: human_duration(billed),
        cost_usd: billed.as_secs_f64() / 3600.0 * usd_per_hour,
        unit: String::new(),
    }
}

/// `GCS storage`, size, dollars per month.
pub fn gcs_line(bytes: u64, usd_per_gb_month: f64) -> CostLine {
    CostLine {
        resource: "GCS storage".to_owned(),
        duration: human_bytes(bytes),
        cost_usd: bytes as f64 / 1e9 * usd_per_gb_month,
        unit: "/month".to_owned(),
    }
}

/// `45 minutes`, `1 minute`, `2.5 hours`, `40 seconds`.
pub fn human_duration(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs < 60.0 {
        return format!("{} seconds", secs.round() as u64);
    }
    let minutes = (secs / 60.0).round() as u64;
    if minutes < 120 {
        return format!("{minutes} minute{}", if minutes == 1 { "" } else { "s" });
    }
    format!("{:.1} hours", secs / 3600.0)
}

/// `87 MB`, `4.9 MB`, `1.2 GB`, `900 KB` (decimal units, as upstream).
pub fn human_bytes(bytes: u64) -> String {
    let b = bytes as f64;
    let (value, unit) = if b >= 1e9 {
        (b / 1e9, "GB")
    } else if b >= 1e6 {
        (b / 1e6, "MB")
    } else if b >= 1e3 {
        (b / 1e3, "KB")
    } else {
        return format!("{bytes} B");
    };
    if value >= 10.0 {
        format!("{value:.0} {unit}")
    } else {
        format!("{value:.1} {unit}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_numbers() {
        let table = PriceTable::runbook_defaults();
        let on_demand = table.usd_per_hour("v6e-1", Provisioning::OnDemand).unwrap();
        let line = tpu_line(
            "v6e-1",
            Provisioning::OnDemand,
            Duration::from_secs(45 * 60),
            on_demand,
        );
        assert_eq!(line.resource, "TPU v6e-1 (on-demand)");
        assert_eq!(line.duration, "45 minutes");
        assert!((line.cost_usd - 1.425).abs() < 1e-9);
        let gcs = gcs_line(87_000_000, GCS_USD_PER_GB_MONTH);
        assert_eq!(gcs.duration, "87 MB");
        assert!((gcs.cost_usd - 0.00174).abs() < 1e-9);
        assert_eq!(
            table.usd_per_hour("v6e-8", Provisioning::Spot),
            Some(0.64 * 8.0)
        );
        assert_eq!(table.usd_per_hour("v5p-8", Provisioning::Spot), None);
    }

    #[test]
    fn price_file() {
        let text = r#"{"source": "billing export 2026-11", "prices": [
            {"accelerator_type": "v6e-1", "provisioning": "spot", "usd_per_hour": 0.81}]}"#;
        let table = PriceTable::from_json(text).unwrap();
        assert_eq!(table.usd_per_hour("v6e-1", Provisioning::Spot), Some(0.81));
        assert_eq!(table.usd_per_hour("v6e-1", Provisioning::OnDemand), None);
        assert!(PriceTable::from_json("{}").is_err());
    }
}
