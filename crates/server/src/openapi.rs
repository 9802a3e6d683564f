//! `GET /openapi.json`: the OpenAPI document, generated from the handlers' `#[utoipa::path]`
//! attributes and the [wire types](crate::wire) the handlers parse into and format from. The
//! numeric bounds come from the same [`Rules`] the types' `validate` checks; a bound that
//! depends on the model (`max_tokens` up to the context length) is stated in the field's
//! description and answered with a 400 when exceeded.

use crate::wire::rules::{Bound, Rules};
use crate::wire::{admin, chat, completion, embeddings, feedback, generate, sampling, Request};
use axum::Json;
use serde_json::Value;
use std::sync::OnceLock;
use utoipa::openapi::schema::{Schema, SchemaType, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::RefOr;
use utoipa::{Modify, Number, OpenApi, ToSchema};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "luodi",
        description = "OpenAI-compatible API (chat completions, completions, embeddings, models) plus \
                       the plain `/generate` contract, health, readiness and Prometheus metrics.",
        license(name = "Apache-2.0")
    ),
    paths(
        crate::routes::completions::chat,
        crate::routes::completions::completions,
        crate::routes::embeddings::embeddings,
        crate::routes::system::models,
        crate::routes::generate::generate,
        crate::routes::feedback::feedback,
        crate::routes::feedback::interactions,
        crate::routes::feedback::interaction,
        crate::routes::admin::cache_stats,
        crate::routes::admin::cache_purge,
        crate::routes::system::health,
        crate::routes::system::ready,
        crate::routes::system::metrics,
        openapi_json,
    ),
    modifiers(&BearerAuth, &Bounds),
    tags(
        (name = "openai", description = "OpenAI-compatible endpoints"),
        (name = "luodi", description = "luodi's own endpoints"),
        (name = "system", description = "Health, readiness, metrics and this document"),
    )
)]
pub struct ApiDoc;

/// The `bearer` security scheme: API keys from `--api-key`; when none are configured the
/// server accepts requests without one (hence the empty alternative on each operation).
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("`Authorization: Bearer <key>`, required when the server has API keys"))
                    .build(),
            ),
        );
    }
}

/// The document as JSON, built once.
pub fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| serde_json::to_value(ApiDoc::openapi()).unwrap_or_default())
}

/// The OpenAPI 3.1 document describing this server.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "system",
    responses((status = 200, description = "This OpenAPI document", content_type = "application/json", body = Object))
)]
pub async fn openapi_json() -> Json<Value> {
    Json(document().clone())
}

/// Writes each wire type's numeric bounds into its schema.
struct Bounds;

impl Modify for Bounds {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let typed: [(std::borrow::Cow<'static, str>, &[&Rules]); 7] = [
            (chat::ChatCompletionRequest::name(), chat::ChatCompletionRequest::RULES),
            (completion::CompletionRequest::name(), completion::CompletionRequest::RULES),
            (generate::GenerateRequest::name(), generate::GenerateRequest::RULES),
            (sampling::SamplingFields::name(), &[&sampling::RULES]),
            (embeddings::EmbeddingRequest::name(), embeddings::EmbeddingRequest::RULES),
            (feedback::FeedbackRequest::name(), feedback::FeedbackRequest::RULES),
            (admin::PurgeRequest::name(), admin::PurgeRequest::RULES),
        ];
        let Some(components) = openapi.components.as_mut() else { return };
        for (name, rules) in typed {
            if let Some(RefOr::T(schema)) = components.schemas.get_mut(name.as_ref()) {
                bound_properties(schema, rules);
            }
        }
    }
}

fn bound_properties(schema: &mut Schema, rules: &[&Rules]) {
    match schema {
        Schema::Object(object) => {
            for (name, property) in object.properties.iter_mut() {
                if let (Some(bound), RefOr::T(property)) = (rules.iter().find_map(|r| r.bound(name)), property) {
                    bound_value(property, bound);
                }
            }
        }
        Schema::AllOf(all) => {
            for item in all.items.iter_mut() {
                if let RefOr::T(item) = item {
                    bound_properties(item, rules);
                }
            }
        }
        _ => {}
    }
}

/// Sets the bound on a number schema, or on the number alternative of a nullable one.
fn bound_value(schema: &mut Schema, bound: &Bound) {
    match schema {
        Schema::Object(object) => {
            let number = |x: f64| if bound.integer { Number::Int(x as isize) } else { Number::Float(x) };
            if bound.lo_open {
                object.exclusive_minimum = Some(number(bound.lo));
            } else {
                object.minimum = Some(number(bound.lo));
            }
            object.maximum = bound.hi.map(number);
            if bound.integer && !matches!(object.schema_type, SchemaType::Type(Type::Integer)) {
                // `Option<u64>` is `["integer", "null"]`: already an integer.
                debug_assert!(matches!(object.schema_type, SchemaType::Array(_)));
            }
        }
        Schema::OneOf(one) => {
            for item in one.items.iter_mut() {
                if let RefOr::T(item) = item {
                    bound_value(item, bound);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn component(name: &str) -> &'static Value {
        &document()["components"]["schemas"][name]
    }

    /// Properties of a component, through `allOf` (flattened parts).
    fn properties(schema: &Value) -> Vec<(String, Value)> {
        let mut out: Vec<(String, Value)> = schema["properties"]
            .as_object()
            .map(|p| p.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        for part in schema["allOf"].as_array().into_iter().flatten() {
            let part = match part["$ref"].as_str() {
                Some(r) => component(r.rsplit('/').next().unwrap_or_default()),
                None => part,
            };
            out.extend(properties(part));
        }
        out
    }

    #[test]
    fn bounds_reach_the_document() {
        let props: std::collections::HashMap<_, _> =
            properties(component("ChatCompletionRequest")).into_iter().collect();
        let t = props["temperature"].to_string();
        assert!(t.contains("\"minimum\":0") && t.contains("\"maximum\":2"), "{t}");
        assert!(props["top_p"].to_string().contains("\"exclusiveMinimum\":0"), "{}", props["top_p"]);
        assert!(props["top_logprobs"].to_string().contains("\"maximum\":20"), "{}", props["top_logprobs"]);
        assert!(props["max_tokens"].to_string().contains("\"minimum\":1"), "{}", props["max_tokens"]);
    }

    /// Every request field has words for what it accepts, so no error falls back to serde's.
    #[test]
    fn every_request_field_has_rules() {
        let typed: [(&str, &[&Rules]); 6] = [
            ("ChatCompletionRequest", chat::ChatCompletionRequest::RULES),
            ("CompletionRequest", completion::CompletionRequest::RULES),
            ("GenerateRequest", generate::GenerateRequest::RULES),
            ("EmbeddingRequest", embeddings::EmbeddingRequest::RULES),
            ("FeedbackRequest", feedback::FeedbackRequest::RULES),
            ("PurgeRequest", admin::PurgeRequest::RULES),
        ];
        for (name, rules) in typed {
            let props = properties(component(name));
            assert!(!props.is_empty(), "{name} has no properties in the document");
            for (field, _) in props {
                assert!(rules.iter().any(|r| r.expected(&field).is_some()), "{name}.{field} has no rules");
            }
        }
    }
}
