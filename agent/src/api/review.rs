//! Who the caller is and what it may do, as kube-apiserver's review APIs answer it:
//! `SelfSubjectAccessReview` (`kubectl auth can-i VERB RESOURCE`), `SelfSubjectRulesReview`
//! (`kubectl auth can-i --list`) and `SelfSubjectReview` (`kubectl auth whoami`).
//!
//! Today every request that gets past the API's token is the cluster's administrator (group
//! `system:masters`), so every review answers "allowed", truthfully. A review is created and
//! answered, never stored (`kinds::REVIEWS`). Pure functions of the request, with the
//! handlers beside them.

use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use k8s_openapi::api::authentication::v1::{SelfSubjectReview, SelfSubjectReviewStatus, UserInfo};
use k8s_openapi::api::authorization::v1::{
    NonResourceRule, ResourceRule, SelfSubjectAccessReview, SelfSubjectRulesReview,
    SubjectAccessReviewStatus, SubjectRulesReviewStatus,
};
use serde::de::DeserializeOwned;

use super::ApiError;
use super::options::{self, Verb};
use crate::manifest::FieldError;
use crate::manifest::kinds::REVIEWS;
use crate::manifest::schema;

/// The identity behind the cluster's token, as `kubectl auth whoami` shows it.
pub const ADMIN_USER: &str = "admin";
/// Its groups: Kubernetes' superuser group, and every authenticated caller's.
pub const ADMIN_GROUPS: &[&str] = &["system:masters", "system:authenticated"];

/// Answers an access review: allowed, once its attributes are well formed.
pub fn access(mut review: SelfSubjectAccessReview) -> Result<SelfSubjectAccessReview, ApiError> {
    let spec = &review.spec;
    match (&spec.resource_attributes, &spec.non_resource_attributes) {
        (Some(_), Some(_)) => Err(invalid(
            "SelfSubjectAccessReview",
            FieldError::new(
                "spec.nonResourceAttributes",
                "Invalid value: \"\": cannot be specified in combination with resourceAttributes",
            ),
        )),
        (None, None) => Err(invalid(
            "SelfSubjectAccessReview",
            FieldError::new(
                "spec.resourceAttributes",
                "Invalid value: \"null\": exactly one of nonResourceAttributes or resourceAttributes must be specified",
            ),
        )),
        _ => {
            // kube-apiserver gives `system:masters` no reason, only the decision.
            review.status = Some(SubjectAccessReviewStatus {
                allowed: true,
                ..Default::default()
            });
            Ok(review)
        }
    }
}

/// Answers a rules review: every verb on every resource, and every non-resource URL.
pub fn rules(mut review: SelfSubjectRulesReview) -> Result<SelfSubjectRulesReview, ApiError> {
    if review.spec.namespace.as_deref().is_none_or(str::is_empty) {
        // kube-apiserver's words (selfsubjectrulesreview/rest.go), a 400.
        return Err(ApiError::BadRequest("no namespace on request".into()));
    }
    let all = || vec!["*".to_string()];
    review.status = Some(SubjectRulesReviewStatus {
        resource_rules: vec![ResourceRule {
            verbs: all(),
            api_groups: Some(all()),
            resources: Some(all()),
            resource_names: None,
        }],
        non_resource_rules: vec![NonResourceRule {
            verbs: all(),
            non_resource_urls: Some(all()),
        }],
        incomplete: false,
        evaluation_error: None,
    });
    Ok(review)
}

/// Answers who the caller is.
pub fn whoami(mut review: SelfSubjectReview) -> SelfSubjectReview {
    review.status = Some(SelfSubjectReviewStatus {
        user_info: Some(UserInfo {
            username: Some(ADMIN_USER.into()),
            groups: Some(ADMIN_GROUPS.iter().map(|g| g.to_string()).collect()),
            ..Default::default()
        }),
    });
    review
}

fn invalid(kind: &str, cause: FieldError) -> ApiError {
    super::objects::invalid(kind, None, vec![cause])
}

/// Reads a review from the body (JSON or YAML) as a create reads its object: the create
/// options checked, the document checked against the kind's schema as `fieldValidation`
/// asks (every bad field named at once). Returns the review and the `Warning`s to send.
async fn review_of<T: DeserializeOwned + k8s_openapi::Resource>(
    uri: &Uri,
    headers: &HeaderMap,
    body: axum::body::Body,
) -> Result<(T, Vec<String>), ApiError> {
    super::check_media_type(headers)?;
    let pairs = options::pairs(uri.query())?;
    options::check(Verb::Create, &pairs)?;
    let mode = options::field_validation(&pairs)?;
    let bytes = super::read_body(body).await?;
    let mut v = super::parse_body(&bytes)?;
    let info = REVIEWS
        .iter()
        .find(|k| k.kind == T::KIND)
        .expect("every review is a row of REVIEWS");
    if v["kind"].as_str().is_some_and(|k| k != T::KIND) {
        return Err(ApiError::BadRequest(format!(
            "the body is a {}, not a {}",
            v["kind"],
            T::KIND
        )));
    }
    // The status is the answer: what a client sends there (kubectl: `allowed: false`) is
    // replaced, as kube-apiserver replaces it.
    if let Some(m) = v.as_object_mut() {
        m.remove("status");
    }
    let checked = schema::check(info, &mut v, mode.unknown());
    if !checked.errors.is_empty() {
        return Err(super::objects::invalid(T::KIND, None, checked.errors));
    }
    let review = T::deserialize(&v)
        .map_err(|e| ApiError::BadRequest(format!("reading the {}: {e}", T::KIND)))?;
    Ok((review, mode.warnings(&checked.dropped)))
}

fn answer<T: serde::Serialize + k8s_openapi::Resource>(
    review: T,
    warnings: Vec<String>,
) -> Response {
    let mut v = serde_json::to_value(review).unwrap_or_default();
    v["apiVersion"] = T::API_VERSION.into();
    v["kind"] = T::KIND.into();
    let resp = (StatusCode::CREATED, axum::Json(v)).into_response();
    super::objects::with_warnings(resp, warnings)
}

pub async fn access_review(
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    let (review, warnings) = review_of(&uri, &headers, body).await?;
    Ok(answer(access(review)?, warnings))
}

pub async fn rules_review(
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    let (review, warnings) = review_of(&uri, &headers, body).await?;
    Ok(answer(rules(review)?, warnings))
}

pub async fn self_review(
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    let (review, warnings) = review_of(&uri, &headers, body).await?;
    Ok(answer(whoami(review), warnings))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn decode<T: DeserializeOwned>(v: serde_json::Value) -> T {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn the_admin_may_do_anything_asked_well_and_a_malformed_review_names_its_field() {
        let r = access(decode(json!({"spec": {"resourceAttributes":
            {"verb": "delete", "resource": "pods", "namespace": "prod"}}})))
        .unwrap();
        assert!(r.status.unwrap().allowed);
        let r = access(decode(json!({"spec": {"nonResourceAttributes":
            {"verb": "get", "path": "/healthz"}}})))
        .unwrap();
        assert!(r.status.unwrap().allowed);
        let e = access(decode(json!({"spec": {}}))).unwrap_err().to_string();
        assert!(
            e.contains("spec.resourceAttributes") && e.contains("exactly one of"),
            "{e}"
        );
        let e = access(decode(
            json!({"spec": {"resourceAttributes": {"verb": "get"},
            "nonResourceAttributes": {"verb": "get", "path": "/"}}}),
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("cannot be specified in combination"), "{e}");
    }

    #[test]
    fn rules_list_everything_for_a_namespace_and_whoami_names_the_admin() {
        let r = rules(decode(json!({"spec": {"namespace": "default"}}))).unwrap();
        let s = r.status.unwrap();
        assert_eq!(s.resource_rules[0].verbs, ["*"]);
        assert_eq!(
            s.resource_rules[0].resources.as_deref(),
            Some(&["*".to_string()][..])
        );
        assert!(!s.incomplete);
        let e = rules(decode(json!({"spec": {}}))).unwrap_err();
        assert!(
            matches!(&e, ApiError::BadRequest(m) if m == "no namespace on request"),
            "{e}"
        );
        let who = whoami(SelfSubjectReview::default())
            .status
            .unwrap()
            .user_info
            .unwrap();
        assert_eq!(who.username.as_deref(), Some("admin"));
        assert!(who.groups.unwrap().contains(&"system:masters".to_string()));
    }
}
