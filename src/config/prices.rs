//! `[prices]`: what a picture costs, in USD, for models whose provider does not say (and
//! for estimates before a call). A model's price is a number (per picture), or a table:
//! per `quality`, and per million tokens for providers that count tokens (OpenAI's
//! gpt-image). huiying ships prices for the models it documents; the file's win.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One model's prices.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Price {
    /// USD per picture, whatever the options.
    PerPicture(f64),
    Table(PriceTable),
}

/// Prices by quality and by token; any may be absent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceTable {
    /// USD per picture when no quality is asked for (or one the table does not name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub picture: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub low: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub medium: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high: Option<f64>,
    /// DALL·E 3's qualities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standard: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hd: Option<f64>,
    /// USD per million tokens, for providers that answer `usage` in tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_text_per_mtok: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_image_per_mtok: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_image_per_mtok: Option<f64>,
}

/// Every model's prices: the shipped ones with the file's on top.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Prices(BTreeMap<String, Price>);

impl Default for Prices {
    /// Prices as the providers list them, read 2026-12-01 (USD; 1024×1024 pictures).
    fn default() -> Self {
        let table = |table: PriceTable| Price::Table(table);
        let prices = [
            // OpenRouter reports each call's cost itself; these estimate before the call.
            ("google/gemini-2.5-flash-image", Price::PerPicture(0.039)),
            ("google/gemini-2.5-flash-image-preview", Price::PerPicture(0.039)),
            ("google/gemini-2.5-flash-image-preview:free", Price::PerPicture(0.0)),
            // OpenAI: gpt-image-1 per quality at 1024², and its token prices for what its
            // answers report (text in $5, image in $10, image out $40 per million).
            (
                "gpt-image-1",
                table(PriceTable {
                    low: Some(0.011),
                    medium: Some(0.042),
                    high: Some(0.167),
                    picture: Some(0.042),
                    input_text_per_mtok: Some(5.0),
                    input_image_per_mtok: Some(10.0),
                    output_image_per_mtok: Some(40.0),
                    ..PriceTable::default()
                }),
            ),
            (
                "dall-e-3",
                table(PriceTable { standard: Some(0.04), hd: Some(0.08), picture: Some(0.04), ..Default::default() }),
            ),
            ("dall-e-2", Price::PerPicture(0.02)),
            // ModelScope's API-Inference is free within its daily quota; the placeholder is offline.
            ("Qwen/Qwen-Image-Edit", Price::PerPicture(0.0)),
            ("huiying/placeholder", Price::PerPicture(0.0)),
        ];
        Self(prices.into_iter().map(|(model, price)| (model.to_string(), price)).collect())
    }
}

impl Prices {
    /// What one picture of `model` costs at `quality` (absent: the table's `picture`).
    pub fn per_picture(&self, model: &str, quality: Option<&str>) -> Option<f64> {
        match self.0.get(model)? {
            Price::PerPicture(usd) => Some(*usd),
            Price::Table(table) => {
                let by_quality = match quality {
                    Some("low") => table.low,
                    Some("medium") => table.medium,
                    Some("high") => table.high,
                    Some("standard") => table.standard,
                    Some("hd") => table.hd,
                    _ => None,
                };
                by_quality.or(table.picture)
            }
        }
    }

    /// What a call cost from the tokens its `usage` counts (OpenAI's images answer
    /// `input_tokens_details.{text_tokens, image_tokens}` and `output_tokens`), when the
    /// table has token prices for `model`.
    pub fn from_tokens(&self, model: &str, usage: &serde_json::Value) -> Option<f64> {
        let Price::Table(table) = self.0.get(model)? else { return None };
        let output = usage.get("output_tokens")?.as_f64()?;
        let details = usage.get("input_tokens_details");
        let tokens = |name: &str| details.and_then(|d| d.get(name)).and_then(serde_json::Value::as_f64).unwrap_or(0.0);
        let usd = tokens("text_tokens") * table.input_text_per_mtok? / 1e6
            + tokens("image_tokens") * table.input_image_per_mtok.unwrap_or(0.0) / 1e6
            + output * table.output_image_per_mtok? / 1e6;
        Some(usd)
    }

    /// The first price that is negative or not a finite number: the model and field.
    pub(super) fn problem(&self) -> Option<(String, f64)> {
        self.0.iter().find_map(|(model, price)| {
            let values: Vec<(&str, Option<f64>)> = match price {
                Price::PerPicture(usd) => vec![("", Some(*usd))],
                Price::Table(t) => vec![
                    (".picture", t.picture),
                    (".low", t.low),
                    (".medium", t.medium),
                    (".high", t.high),
                    (".standard", t.standard),
                    (".hd", t.hd),
                    (".input_text_per_mtok", t.input_text_per_mtok),
                    (".input_image_per_mtok", t.input_image_per_mtok),
                    (".output_image_per_mtok", t.output_image_per_mtok),
                ],
            };
            values.into_iter().find_map(|(field, value)| {
                value.filter(|usd| !usd.is_finite() || *usd < 0.0).map(|usd| (format!("{model:?}{field}"), usd))
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quality_the_table_names_is_its_price_else_the_pictures() {
        let prices = Prices::default();
        assert_eq!(prices.per_picture("gpt-image-1", Some("high")), Some(0.167));
        assert_eq!(prices.per_picture("gpt-image-1", None), Some(0.042));
        assert_eq!(prices.per_picture("dall-e-3", Some("hd")), Some(0.08));
        assert_eq!(prices.per_picture("google/gemini-2.5-flash-image", Some("high")), Some(0.039));
        assert_eq!(prices.per_picture("some/unpriced-model", None), None);
    }

    #[test]
    fn gpt_image_tokens_cost_what_the_table_says_each_quality_costs_to_the_cent() {
        let prices = Prices::default();
        // Output tokens of a 1024×1024 picture by quality (OpenAI's image pricing guide),
        // with a short text prompt.
        for (quality, output_tokens) in [("low", 272), ("medium", 1056), ("high", 4160)] {
            let usage = serde_json::json!({"input_tokens": 12, "output_tokens": output_tokens,
                "input_tokens_details": {"text_tokens": 12, "image_tokens": 0}});
            let computed = prices.from_tokens("gpt-image-1", &usage).unwrap();
            let listed = prices.per_picture("gpt-image-1", Some(quality)).unwrap();
            assert!((computed - listed).abs() < 0.005, "{quality}: {computed} vs {listed}");
        }
        assert_eq!(prices.from_tokens("dall-e-3", &serde_json::json!({"output_tokens": 10})), None, "no token prices");
    }

    #[test]
    fn a_negative_price_is_named_with_its_field() {
        let mut prices = Prices::default();
        prices.0.insert("gpt-image-1".into(), Price::Table(PriceTable { high: Some(-1.0), ..Default::default() }));
        assert_eq!(prices.problem(), Some(("\"gpt-image-1\".high".to_string(), -1.0)));
    }
}
