//! What a paid job will cost, estimated before it is submitted.
//!
//! Video services charge per second of output, and the price depends on the model. A plugin
//! keeps a built-in [`PriceTable`] (model → price per second), lets the user correct it with
//! its [`PRICES_SETTING`] setting (prices change faster than plugins are released), and asks
//! the host to accept the [`Cost`] with [`Context::confirm_cost`](crate::Context::confirm_cost)
//! before the submit request. The host shows the estimate, and asks or refuses when it is above
//! the user's threshold.
//!
//! # Example
//!
//! ```
//! use launcher_sdk::cost::PriceTable;
//!
//! let prices = PriceTable::new(&[("gen4_turbo", 0.05), ("gen3a_turbo", 0.05)], "USD")
//!     .with_override(Some("gen4_turbo=0.06"))
//!     .unwrap();
//! let cost = prices.estimate("gen4_turbo", 10.0, "10 s of gen4_turbo video").unwrap();
//! assert!((cost.amount - 0.6).abs() < 1e-9);
//! assert_eq!(cost.to_string(), "$0.60 (10 s of gen4_turbo video)");
//! ```

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::PluginError;
use crate::types::SettingSpec;

/// The name of the setting that overrides a plugin's built-in prices.
pub const PRICES_SETTING: &str = "prices";

/// Returns the [`PRICES_SETTING`] setting, read from the environment variable `env`.
pub fn prices_setting(env: &str, currency: &str) -> SettingSpec {
    SettingSpec::new(
        PRICES_SETTING,
        env,
        format!("prices per second of output, in {currency}: `model=price,model2=price`"),
    )
}

/// An estimate of what a job will cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cost {
    /// How much, in `currency`.
    pub amount: f64,
    /// An ISO 4217 code (`USD`), or a service's own unit (`credits`).
    pub currency: String,
    /// What is paid for, for the user: `10 s of gen4_turbo video`.
    pub what: String,
}

impl Cost {
    /// Returns the amount with its currency: `$0.60`, `¥3.50`, `12.00 credits`.
    pub fn amount_text(&self) -> String {
        match self.currency.as_str() {
            "USD" => format!("${:.2}", self.amount),
            "CNY" => format!("¥{:.2}", self.amount),
            "EUR" => format!("€{:.2}", self.amount),
            other => format!("{:.2} {other}", self.amount),
        }
    }
}

impl fmt::Display for Cost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.amount_text(), self.what)
    }
}

/// Prices per second of output, by model, in one currency.
#[derive(Debug, Clone, PartialEq)]
pub struct PriceTable {
    prices: Vec<(String, f64)>,
    currency: String,
}

impl PriceTable {
    /// Returns the table of a plugin's built-in `prices` (model, price per second).
    pub fn new(prices: &[(&str, f64)], currency: &str) -> PriceTable {
        PriceTable {
            prices: prices.iter().map(|(m, p)| (m.to_string(), *p)).collect(),
            currency: currency.to_string(),
        }
    }

    /// Applies the user's [`PRICES_SETTING`] value, `model=price,model2=price`: a listed
    /// model gets the new price, a model the table lacks is added. `None` or an empty value
    /// changes nothing.
    ///
    /// A malformed value is an invalid-input error naming the setting: guessing a price
    /// would be worse than no job.
    pub fn with_override(mut self, value: Option<&str>) -> Result<Self, PluginError> {
        for entry in value.unwrap_or("").split(',').map(str::trim) {
            if entry.is_empty() {
                continue;
            }
            let parsed = entry.split_once('=').and_then(|(model, price)| {
                let price: f64 = price.trim().parse().ok()?;
                let model = model.trim();
                (!model.is_empty() && price.is_finite() && price >= 0.0).then_some((model, price))
            });
            let Some((model, price)) = parsed else {
                return Err(PluginError::invalid_input(format!(
                    "the `{PRICES_SETTING}` setting has `{entry}`, which is not `model=price` \
                     with a price of zero or more"
                ))
                .with_hint(format!(
                    "write it as `model=price,model2=price`, prices per second of output in {}",
                    self.currency
                )));
            };
            match self.prices.iter_mut().find(|(m, _)| m == model) {
                Some(known) => known.1 = price,
                None => self.prices.push((model.to_string(), price)),
            }
        }
        Ok(self)
    }

    /// Returns the price of one second of `model`'s output, when the table knows it.
    pub fn per_second(&self, model: &str) -> Option<f64> {
        self.prices
            .iter()
            .find(|(m, _)| m == model)
            .map(|(_, p)| *p)
    }

    /// Returns the currency of the table's prices.
    pub fn currency(&self) -> &str {
        &self.currency
    }

    /// Returns what `seconds` of `model`'s output cost, described as `what`; `None` when the
    /// table does not know the model (the job then goes on without an estimate).
    pub fn estimate(&self, model: &str, seconds: f64, what: &str) -> Option<Cost> {
        Some(Cost {
            amount: self.per_second(model)? * seconds.max(0.0),
            currency: self.currency.clone(),
            what: what.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn table() -> PriceTable {
        PriceTable::new(&[("gen4_turbo", 0.05), ("veo3", 0.4)], "USD")
    }

    #[test]
    fn an_override_replaces_and_adds_prices() {
        let prices = table()
            .with_override(Some(" veo3 = 0.5 , new-model=0.01,"))
            .unwrap();
        assert_eq!(prices.per_second("veo3"), Some(0.5));
        assert_eq!(prices.per_second("new-model"), Some(0.01));
        assert_eq!(prices.per_second("gen4_turbo"), Some(0.05));
        assert_eq!(prices.per_second("unknown"), None);
        assert_eq!(table().with_override(None).unwrap(), table());
        assert_eq!(table().with_override(Some("")).unwrap(), table());
    }

    #[test]
    fn a_malformed_override_names_the_setting() {
        for bad in [
            "veo3",
            "veo3=cheap",
            "=0.1",
            "veo3=-1",
            "veo3=NaN",
            "veo3=inf",
        ] {
            let err = table().with_override(Some(bad)).unwrap_err();
            assert_eq!(err.kind, ErrorKind::InvalidInput, "{bad}");
            assert!(err.message.contains("`prices` setting"), "{}", err.message);
            assert!(err.hint.unwrap().contains("model=price"));
        }
    }

    #[test]
    fn an_estimate_is_price_times_seconds() {
        let cost = table().estimate("veo3", 8.0, "8 s of veo3 video").unwrap();
        assert!((cost.amount - 3.2).abs() < 1e-9);
        assert_eq!(cost.to_string(), "$3.20 (8 s of veo3 video)");
        assert!(table().estimate("unknown", 8.0, "x").is_none());
        let credits = Cost {
            amount: 12.0,
            currency: "credits".into(),
            what: "x".into(),
        };
        assert_eq!(credits.amount_text(), "12.00 credits");
    }

    #[test]
    fn a_cost_crosses_the_boundary_as_json() {
        let cost = table().estimate("gen4_turbo", 10.0, "10 s").unwrap();
        let json = serde_json::to_value(&cost).unwrap();
        assert_eq!(json["currency"], "USD");
        assert_eq!(serde_json::from_value::<Cost>(json).unwrap(), cost);
    }
}
