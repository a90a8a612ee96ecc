//! What a call cost: what the provider reported, else its tokens times `[prices]`, else
//! the table's price for one picture, else unknown (never 0 for unknown).

use serde_json::Value;

use super::model::ImageModel;
use crate::config::Prices;
use crate::contract::cost::{Cost, CostSource};

/// The cost of one picture of `model` at `quality`, from the answer's `usage`.
pub(super) fn of_call(
    client: &dyn ImageModel,
    prices: &Prices,
    model: &str,
    quality: Option<&str>,
    usage: Option<Value>,
) -> Cost {
    let (usd, source) = match usage.as_ref() {
        Some(usage) if let Some(usd) = client.reported_cost(usage) => (Some(usd), CostSource::Reported),
        Some(usage) if let Some(usd) = prices.from_tokens(model, usage) => (Some(usd), CostSource::Computed),
        _ => match prices.per_picture(model, quality) {
            Some(usd) => (Some(usd), CostSource::Estimated),
            None => (None, CostSource::Unknown),
        },
    };
    Cost { cost_usd: usd, cost_source: source, usage }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::generator::openrouter::OpenRouterClient;
    use crate::generator::placeholder::Placeholder;

    #[test]
    fn reported_beats_tokens_beats_the_table_and_nothing_known_is_unknown() {
        let prices = Prices::default();
        let openrouter = OpenRouterClient::new(&Default::default(), crate::config::Secret::default()).unwrap();
        let reported =
            of_call(&openrouter, &prices, "google/gemini-2.5-flash-image", None, Some(json!({"cost": 0.0387})));
        assert_eq!((reported.cost_usd, reported.cost_source), (Some(0.0387), CostSource::Reported));
        let tokens = json!({"output_tokens": 4160, "input_tokens_details": {"text_tokens": 10, "image_tokens": 0}});
        let computed = of_call(&Placeholder, &prices, "gpt-image-1", Some("high"), Some(tokens));
        assert_eq!(computed.cost_source, CostSource::Computed);
        let estimated = of_call(&Placeholder, &prices, "dall-e-3", Some("hd"), None);
        assert_eq!((estimated.cost_usd, estimated.cost_source), (Some(0.08), CostSource::Estimated));
        let unknown = of_call(&Placeholder, &prices, "some/unpriced-model", None, Some(json!({"total_tokens": 9})));
        assert_eq!((unknown.cost_usd, unknown.cost_source), (None, CostSource::Unknown));
        assert_eq!(unknown.usage, Some(json!({"total_tokens": 9})), "the raw usage is kept beside it");
    }
}
