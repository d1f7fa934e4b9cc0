//! Images on this node: `POST /apis/flotilla.io/v1/images/import` (the body is the tarball,
//! streamed to disk), `POST .../images/pull`, `GET /apis/flotilla.io/v1/images`,
//! `DELETE .../images?ref=REF` (layers that containers use stay).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Query, State};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use super::{ApiError, ApiState};
use flotilla_runtime::RuntimeError;

impl From<RuntimeError> for ApiError {
    fn from(e: RuntimeError) -> Self {
        match e {
            RuntimeError::ImageNotFound { .. } => ApiError::NotFound(e.to_string()),
            RuntimeError::BadReference { .. }
            | RuntimeError::BadArchive { .. }
            | RuntimeError::DigestMismatch { .. }
            | RuntimeError::NoPlatform { .. }
            | RuntimeError::PullFailed { .. }
            | RuntimeError::UnsupportedMediaType { .. } => ApiError::BadRequest(e.to_string()),
            other => ApiError::Internal(format!("{other}: {}", source_chain(&other))),
        }
    }
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut out = Vec::new();
    let mut s = e.source();
    while let Some(x) = s {
        out.push(x.to_string());
        s = x.source();
    }
    out.join(": ")
}

pub async fn import(State(s): State<Arc<ApiState>>, body: Body) -> Result<Json<Value>, ApiError> {
    let dir = s.images_dir.join("tmp");
    let path = dir.join(format!("upload-{}.tar", crate::store::new_uid()));
    let result = async {
        let mut f = tokio::fs::File::create(&path)
            .await
            .map_err(|e| ApiError::Internal(format!("creating {}: {e}", path.display())))?;
        let mut stream = body.into_data_stream();
        while let Some(chunk) = stream.next().await {
            let chunk =
                chunk.map_err(|e| ApiError::BadRequest(format!("reading the upload: {e}")))?;
            f.write_all(&chunk)
                .await
                .map_err(|e| ApiError::Internal(format!("writing {}: {e}", path.display())))?;
        }
        f.flush()
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        drop(f);
        let images = s.images.clone();
        let p = path.clone();
        let got = tokio::task::spawn_blocking(move || images.import(&p))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))??;
        Ok::<_, ApiError>(got)
    }
    .await;
    let _ = tokio::fs::remove_file(&path).await;
    let got = result?;
    tracing::info!(node = %s.node, images = got.len(), "imported images");
    Ok(Json(json!({"kind": "ImageList", "items": got})))
}

/// `POST .../images/pull` with `{"reference": R, "username": U, "password": P}` (credentials
/// optional).
pub async fn pull(State(s): State<Arc<ApiState>>, body: Body) -> Result<Json<Value>, ApiError> {
    let v = super::parse_body(&super::read_body(body).await?)?;
    let reference = v["reference"]
        .as_str()
        .filter(|r| !r.is_empty())
        .ok_or_else(|| ApiError::BadRequest("reference: required".into()))?;
    let creds = match (v["username"].as_str(), v["password"].as_str()) {
        (Some(u), Some(p)) => Some(flotilla_runtime::image::Credentials {
            username: u.into(),
            password: p.into(),
        }),
        (None, None) => None,
        _ => {
            return Err(ApiError::BadRequest(
                "username and password: give both or neither".into(),
            ));
        }
    };
    let got = s.images.pull(reference, creds.as_ref()).await?;
    tracing::info!(node = %s.node, image = %got.reference, digest = %got.digest, "pulled");
    Ok(Json(json!({"kind": "ImageList", "items": [got]})))
}

pub async fn list(State(s): State<Arc<ApiState>>) -> Result<Json<Value>, ApiError> {
    let images = s.images.clone();
    let items = tokio::task::spawn_blocking(move || images.list())
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    Ok(Json(json!({"kind": "ImageList", "items": items})))
}

pub async fn remove(
    State(s): State<Arc<ApiState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let reference = q
        .get("ref")
        .cloned()
        .ok_or_else(|| ApiError::BadRequest("ref: required".into()))?;
    let images = s.images.clone();
    let r = reference.clone();
    let in_use = s.pods.runtime.layers_in_use();
    tokio::task::spawn_blocking(move || images.remove(&r, &in_use))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    Ok(Json(
        json!({"kind": "Status", "status": "Success", "message": format!("{reference} removed")}),
    ))
}
